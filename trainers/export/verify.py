"""Reload what was written and compare it with the source model on held-out prompts.

Each prompt is rendered with the source's chat template and tokenized; the source answers it greedily (up to
MAX_NEW_TOKENS). On the token sequence prompt + that answer, both models are run teacher-forced, so one early
difference cannot cascade, and compared position by position:

- top-1 agreement: the share of positions where both models' most likely next token is the same;
- mean KL: KL(source || reloaded) in nats, averaged over positions;
- greedy tokens: the reloaded model's own greedy answer against the source's, token by token;
- max |logit difference|.

What is required depends on what the format promises:

- safetensors, GGUF f16 and bf16 are lossless up to storing each weight in the file's type. The reference is the
  source with its matrices rounded to that type (safetensors: none; both sides compute in float32), so the
  reloaded model must give identical greedy tokens and logits within LOSSLESS_MAX_LOGIT_DIFF: any real change to
  a tensor, the rotary permutation, the config or the tokenizer shows. The cost of the rounding itself (against
  the unrounded source) is reported beside it.
- q8_0 and q4_0 lose information on purpose: top-1 agreement and mean KL against the unrounded source must meet
  QUANT_THRESHOLDS.
- Always: the reloaded tokenizer gives the same ids for every prompt, and (GGUF) the embedded chat template
  renders the same text.
- llama.cpp (when llama-cpp-python is installed, `pip install "rung[export]"`): the GGUF through llama.cpp itself,
  same prompts; its kernels compute in their own precision, so every type is judged by LLAMA_CPP_THRESHOLDS.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

from rung.trainers.generate import stop_ids

MAX_NEW_TOKENS = 24      # greedy tokens per prompt
MAX_PROMPT_TOKENS = 256  # longer prompts keep their end

# float32 on both sides and the same weights: only the order of summation differs (measured ~1e-5 on
# builtin:tiny); a changed tensor moves logits by far more.
LOSSLESS_MAX_LOGIT_DIFF = 1e-3


@dataclass(frozen=True)
class Threshold:
    min_top1: float   # top-1 agreement, 0..1
    max_kl: float     # mean KL(source || reloaded), nats


# Against the unrounded source. Published llama.cpp figures for 7-8B models put Q8_0 near 0.998 top-1 and
# ~0.001 KL, Q4_0 near 0.92 top-1 and ~0.05 KL; the bounds leave room for small models, which lose more.
QUANT_THRESHOLDS: dict[str, Threshold] = {
    "q8_0": Threshold(min_top1=0.95, max_kl=0.01),
    "q4_0": Threshold(min_top1=0.80, max_kl=0.10),
}
# llama.cpp computes in its own precision (f16 activations on some paths), so even f16 is not bit-exact there.
LLAMA_CPP_THRESHOLDS: dict[str, Threshold] = {
    "f16": Threshold(min_top1=0.98, max_kl=0.005),
    "bf16": Threshold(min_top1=0.97, max_kl=0.01),
    **QUANT_THRESHOLDS,
}


@dataclass
class Case:
    prompt: Any              # a conversation or a plain string
    text: str                # the rendered prompt
    ids: list[int]           # its tokens
    answer: list[int]        # the unrounded source's greedy answer


@dataclass
class Reference:
    cases: list[Case]
    stops: list[int]
    pad: int | None
    logprobs: list[Any]                   # unrounded source, per case: log-softmax [positions, vocab], CPU float32
    exact_logits: list[Any] | None = None  # raw logits of the source as the file stores it (rounded, lossless)
    exact_answers: list[list[int]] | None = None
    rounded_to: str | None = None
    device: str = "cpu"                   # the reloaded model runs where the source ran: same kernels


@dataclass
class Check:
    name: str
    engine: str
    figure: str
    threshold: str
    passed: bool | None      # None: reported only


@dataclass
class Verification:
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)   # engine -> measured numbers
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]


# ---------------------------------------------------------------------------------------------- models


def render(tokenizer, prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])[-MAX_PROMPT_TOKENS:]


class TransformersScorer:
    """A transformers causal LM, float32, on the CPU or the GPU it is on."""

    engine = "transformers"

    def __init__(self, model):
        self.model = model

    def logits(self, ids: list[int]):
        import torch

        with torch.no_grad():
            tensor = torch.tensor([ids], device=self.model.device)
            return self.model(input_ids=tensor).logits[0].float().cpu()

    def greedy(self, ids: list[int], stops: list[int], pad: int | None) -> list[int]:
        import torch

        with torch.no_grad():
            tensor = torch.tensor([ids], device=self.model.device)
            out = self.model.generate(input_ids=tensor, attention_mask=torch.ones_like(tensor),
                                      max_new_tokens=MAX_NEW_TOKENS, do_sample=False, temperature=None, top_p=None,
                                      top_k=None, eos_token_id=stops or None, pad_token_id=pad)
        return out[0, len(ids):].tolist()


class LlamaCppScorer:
    """A GGUF file through llama.cpp (llama-cpp-python): all logits kept, one sequence at a time."""

    engine = "llama.cpp"

    def __init__(self, path: str, n_ctx: int):
        from rung.core.llama_chat import open_llama  # llama.cpp's weight repacking off: it segfaults here

        self.llm = open_llama(path, n_ctx=n_ctx, logits_all=True, n_threads=1, seed=0)

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))[-MAX_PROMPT_TOKENS:]

    def logits(self, ids: list[int]):
        import torch

        self.llm.reset()
        self.llm.eval(ids)
        return torch.tensor(self.llm.scores[: len(ids)].copy(), dtype=torch.float32)

    def greedy(self, ids: list[int], stops: list[int], pad: int | None) -> list[int]:
        self.llm.reset()
        self.llm.eval(ids)
        answer: list[int] = []
        for _ in range(MAX_NEW_TOKENS):
            token = int(self.llm.scores[self.llm.n_tokens - 1].argmax())
            answer.append(token)
            if token in stops:
                break
            self.llm.eval([token])
        return answer


# ---------------------------------------------------------------------------------------------- reference


def build_reference(model, tokenizer, prompts: list[Any], *, round_to: str | None = None,
                    echo: Callable[[str], None] = lambda _: None) -> Reference:
    """Greedy answers and teacher-forced log-probs of the source, in float32. round_to ("f16" / "bf16"): then
    also the logits of the source with its matrices rounded to that type, as a GGUF of that type stores them.
    The model is changed in place (float32, then rounded): call this after the file is written."""
    import torch

    model.float()
    stops, pad = stop_ids(model, tokenizer), tokenizer.pad_token_id
    scorer = TransformersScorer(model)
    cases = []
    for prompt in prompts:
        text = render(tokenizer, prompt)
        ids = encode(tokenizer, text)
        cases.append(Case(prompt=prompt, text=text, ids=ids, answer=scorer.greedy(ids, stops, pad)))
    logits = [scorer.logits(c.ids + c.answer)[:-1] for c in cases]
    reference = Reference(cases=cases, stops=stops, pad=pad, logprobs=[torch.log_softmax(x, dim=-1) for x in logits],
                          exact_logits=logits, exact_answers=[c.answer for c in cases], device=str(model.device))
    if round_to is not None:
        dtype = {"f16": torch.float16, "bf16": torch.bfloat16}[round_to]
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.ndim >= 2:  # GGUF keeps vectors (norms, biases) in F32
                    parameter.copy_(parameter.to(dtype).float())
        reference.exact_logits = [scorer.logits(c.ids + c.answer)[:-1] for c in cases]
        reference.exact_answers = [scorer.greedy(c.ids, stops, pad) for c in cases]
        reference.rounded_to = round_to
    echo(f"Reference: {len(cases)} prompts, {sum(len(c.answer) for c in cases)} greedy tokens from the source")
    return reference


# ---------------------------------------------------------------------------------------------- comparing


def compare(reference: Reference, scorer, *, tokenize: Callable[[str], list[int]] | None = None) -> dict[str, Any]:
    """Figures for one reloaded model: tokens_identical (prompts whose ids match), top1, mean_kl, positions,
    greedy_identical (against the unrounded source), exact_greedy_identical and max_logit_diff (against the
    rounded reference, when there is one)."""
    import torch

    same_ids = agree = positions = 0
    kl_total = 0.0
    greedy_same = exact_greedy_same = 0
    max_diff = 0.0
    for index, case in enumerate(reference.cases):
        if tokenize is not None and tokenize(case.text) == case.ids:
            same_ids += 1
        sequence = case.ids + case.answer
        logits = scorer.logits(sequence)[:-1]
        logprobs = torch.log_softmax(logits, dim=-1)
        source = reference.logprobs[index]
        agree += int((logprobs.argmax(-1) == source.argmax(-1)).sum())
        positions += source.shape[0]
        kl_total += float((source.exp() * (source - logprobs)).sum())
        answer = scorer.greedy(case.ids, reference.stops, reference.pad)
        greedy_same += int(answer == case.answer)
        if reference.exact_logits is not None:
            max_diff = max(max_diff, float((logits - reference.exact_logits[index]).abs().max()))
            exact_greedy_same += int(answer == reference.exact_answers[index])
    n = len(reference.cases)
    return {"prompts": n, "positions": positions, "tokens_identical": same_ids if tokenize else None,
            "top1": agree / max(positions, 1), "mean_kl": max(0.0, kl_total / max(positions, 1)),
            "greedy_identical": greedy_same, "exact_greedy_identical": exact_greedy_same,
            "max_logit_diff": max_diff}


def judge(result: Verification, figures: dict[str, Any], *, engine: str, lossless: bool,
          threshold: Threshold | None, against: str) -> None:
    """Turn one engine's figures into checks (the module docstring says which are required)."""
    n = figures["prompts"]
    if figures.get("tokens_identical") is not None:
        result.checks.append(Check("tokenizer ids", engine, f"{figures['tokens_identical']}/{n} prompts identical",
                                   "all identical", figures["tokens_identical"] == n))
    if lossless:
        result.checks.append(Check(f"greedy tokens vs {against}", engine,
                                   f"{figures['exact_greedy_identical']}/{n} prompts identical", "all identical",
                                   figures["exact_greedy_identical"] == n))
        result.checks.append(Check(f"max |logit difference| vs {against}", engine,
                                   f"{figures['max_logit_diff']:.2e}", f"<= {LOSSLESS_MAX_LOGIT_DIFF:g}",
                                   figures["max_logit_diff"] <= LOSSLESS_MAX_LOGIT_DIFF))
    if not lossless or against != "source":
        result.checks.append(Check("greedy tokens vs source", engine,
                                   f"{figures['greedy_identical']}/{n} prompts identical", "reported", None))
    top1 = f"{figures['top1']:.4f} over {figures['positions']} positions"
    kl = f"{figures['mean_kl']:.2e} nats"
    result.checks.append(Check("top-1 agreement vs source", engine, top1,
                               f">= {threshold.min_top1}" if threshold else "reported",
                               figures["top1"] >= threshold.min_top1 if threshold else None))
    result.checks.append(Check("mean KL vs source", engine, kl, f"<= {threshold.max_kl}" if threshold else "reported",
                               figures["mean_kl"] <= threshold.max_kl if threshold else None))
    result.figures[engine] = figures


def verify_safetensors(folder: str, reference: Reference) -> Verification:
    """Reload the folder with AutoModelForCausalLM / AutoTokenizer alone and compare with the source."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = Verification()
    model = AutoModelForCausalLM.from_pretrained(folder).float().eval().to(reference.device)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    figures = compare(reference, TransformersScorer(model), tokenize=lambda text: encode(tokenizer, text))
    _template_check(result, reference, tokenizer, "transformers")
    judge(result, figures, engine="transformers", lossless=True, threshold=None, against="source")
    return result


def verify_gguf(path: str, reference: Reference, quant: str, *, chat_template: str | None = None,
                llama_cpp: bool | None = None) -> Verification:
    """Reload a GGUF with transformers (`gguf_file=`, dequantized) and, when llama-cpp-python is installed (or
    llama_cpp=True), with llama.cpp; compare with the source. See the module docstring for what is required."""
    import importlib.util
    from pathlib import Path

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = Verification()
    file = Path(path)
    with _no_progress_bars():  # transformers' GGUF loader draws a tqdm bar per load
        model = AutoModelForCausalLM.from_pretrained(str(file.parent), gguf_file=file.name,
                                                     dtype=torch.float32).eval().to(reference.device)
        tokenizer = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
    lossless = quant in ("f16", "bf16")
    figures = compare(reference, TransformersScorer(model), tokenize=lambda text: encode(tokenizer, text))
    if chat_template is not None:
        result.checks.append(Check("embedded chat template", "transformers",
                                   "identical" if tokenizer.chat_template == chat_template else "differs",
                                   "identical", tokenizer.chat_template == chat_template))
    _template_check(result, reference, tokenizer, "transformers")
    judge(result, figures, engine="transformers", lossless=lossless, threshold=QUANT_THRESHOLDS.get(quant),
          against=f"source rounded to {quant}" if lossless else "source")
    del model
    if llama_cpp is None:
        llama_cpp = importlib.util.find_spec("llama_cpp") is not None
    if llama_cpp:
        longest = max(len(c.ids) + len(c.answer) for c in reference.cases)
        scorer = LlamaCppScorer(str(file), n_ctx=max(512, longest + 8))
        cpp = compare(reference, scorer, tokenize=scorer.tokenize)
        judge(result, cpp, engine="llama.cpp", lossless=False, threshold=LLAMA_CPP_THRESHOLDS[quant], against="source")
    else:
        result.notes.append('llama.cpp check skipped: llama-cpp-python is not installed (pip install "rung[export]")')
    return result


@contextlib.contextmanager
def _no_progress_bars():
    """transformers' GGUF loader draws a tqdm bar on stderr (tqdm.auto, not its own switchable one)."""
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        yield


def _template_check(result: Verification, reference: Reference, tokenizer, engine: str) -> None:
    conversations = [c for c in reference.cases if not isinstance(c.prompt, str)]
    if not conversations:
        return
    same = sum(render(tokenizer, c.prompt) == c.text for c in conversations)
    result.checks.append(Check("chat template renders the prompts", engine,
                               f"{same}/{len(conversations)} identical", "all identical", same == len(conversations)))
