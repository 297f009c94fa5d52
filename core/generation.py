"""One way to get answers from a model, whatever the spec: a local folder, a hub id, `builtin:…`, a PEFT adapter
folder, a GGUF (llama.cpp answers it when installed: core/llama_chat.py), or `openai:NAME` behind an
OpenAI-compatible endpoint (core/endpoint.py).

    model = open_chat_model(spec, api_base=..., api_key_env=...)
    answers = model.chat([[{"role": "user", "content": "..."}], ...], max_new_tokens=64)
    model.usage     # requests, prompt/completion tokens, seconds (and cost for priced endpoints)

Everything that generates text (the prompting engine, `rung rag answer`, probe, gate) goes through this, so a
number measured on one kind of model means the same on another. Heavy imports stay inside the functions.
"""

from __future__ import annotations

import math
import time
from typing import Any, Protocol

from rung.core.errors import RungError
from rung.core.fileio import short
from rung.core.vocab import MAX_NEW_TOKENS

Conversation = list[dict[str, str]]


class ChatModel(Protocol):
    def chat(self, conversations: list[Conversation], *, max_new_tokens: int, temperature: float = 0.0,
             top_p: float | None = None) -> list[str]: ...

    @property
    def usage(self) -> dict[str, Any]: ...


def check_generation(max_new_tokens: Any, temperature: Any = 0.0, top_p: Any = None) -> list[str]:
    """Problems with generation settings, all at once: max_new_tokens >= 1, temperature finite and >= 0,
    top_p in (0, 1]."""
    problems = []
    if (isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int)
            or not 1 <= max_new_tokens <= MAX_NEW_TOKENS):
        problems.append(f"max_new_tokens: expected a whole number from 1 to {MAX_NEW_TOKENS:,}, got "
                        f"{short(max_new_tokens)}")
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature)
            or temperature < 0):
        problems.append(f"temperature: expected a finite number >= 0 (0 = greedy), got {short(temperature)}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not math.isfinite(top_p) or not 0 < top_p <= 1):
        problems.append(f"top_p: expected a number in (0, 1], got {short(top_p)}")
    return problems


class LocalChat:
    """A transformers model in this process: batched, left-padded generation with the model's chat template;
    greedy at temperature 0. Prompts longer than the model's window keep their end."""

    def __init__(self, spec: str, *, trust_remote_code: bool = False, batch_size: int = 8):
        self.spec = spec
        self.trust_remote_code = trust_remote_code
        self.batch_size = batch_size
        self.rows_per_call = batch_size  # how many rows engines hand over at once (progress lines)
        self._loaded: tuple[Any, Any] | None = None
        self._usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0}

    def loaded(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded on first use."""
        if self._loaded is None:
            from rung.core.models import load_for_inference, quiet_libraries

            quiet_libraries()  # rung's own lines (and --json) stay clean of progress bars
            self._loaded = load_for_inference(self.spec, trust_remote_code=self.trust_remote_code)
        return self._loaded

    def chat(self, conversations: list[Conversation], *, max_new_tokens: int, temperature: float = 0.0,
             top_p: float | None = None) -> list[str]:
        problems = check_generation(max_new_tokens, temperature, top_p)
        if problems:
            raise RungError(problems)
        import torch

        model, tokenizer = self.loaded()
        started = time.perf_counter()
        window = getattr(model.config, "max_position_embeddings", None) or 4096
        budget = max(16, window - max_new_tokens)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = model.generation_config.eos_token_id
        stops = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stops:
            stops.insert(0, tokenizer.eos_token_id)
        sampling = ({"do_sample": True, "temperature": float(temperature), "top_p": top_p} if temperature > 0
                    else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None})
        answers: list[str] = []
        for start in range(0, len(conversations), self.batch_size):
            batch = conversations[start:start + self.batch_size]
            rows = [tokenizer.apply_chat_template(c, add_generation_prompt=True, return_dict=True)["input_ids"]
                    for c in batch]
            rows = [list(r)[-budget:] for r in rows]
            width = max(len(r) for r in rows)
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=model.device)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=model.device)
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                     eos_token_id=stops or None, pad_token_id=pad, **sampling)
            for row in out:
                new = row[width:]
                answers.append(tokenizer.decode(new, skip_special_tokens=True).strip())
                self._usage["completion_tokens"] += int((new != pad).sum()) if pad is not None else len(new)
            self._usage["prompt_tokens"] += sum(len(r) for r in rows)
            self._usage["requests"] += len(batch)
        self._usage["seconds"] += time.perf_counter() - started
        return answers

    @property
    def usage(self) -> dict[str, Any]:
        """Totals over every chat() call: requests (rows), prompt and completion tokens, seconds."""
        return {**self._usage, "seconds": round(self._usage["seconds"], 3)}


def open_chat_model(spec: str, *, api_base: str | None = None, api_key_env: str | None = None,
                    concurrency: int = 4, timeout_s: float = 30.0, max_retries: int = 2,
                    trust_remote_code: bool = False,
                    batch_size: int = 8, usd_per_million_input: float | None = None,
                    usd_per_million_output: float | None = None, backend: str = "auto") -> ChatModel:
    """The model a spec names: `openai:NAME` -> an endpoint client; a GGUF spec -> llama.cpp (backend auto with
    llama-cpp-python installed, or llama.cpp); anything else, or backend transformers -> transformers here."""
    from rung.core import endpoint

    name = endpoint.parse_endpoint_spec(spec)
    if name is not None:
        settings = endpoint.EndpointSettings(
            model=name, api_base=api_base, timeout_s=timeout_s,
            api_key_env="OPENAI_API_KEY" if api_key_env is None else api_key_env,
            max_retries=max_retries,
            concurrency=concurrency, usd_per_million_input=usd_per_million_input,
            usd_per_million_output=usd_per_million_output)
        return endpoint.EndpointChat(settings)
    # api_base and the key are for openai:NAME specs; a local spec beside them (a gate's local candidate against
    # an endpoint baseline, a local judge) simply loads here
    llama = llama_backend(spec, backend)
    if llama is not None:
        from rung.core.llama_chat import LlamaCppChat

        return LlamaCppChat(spec, llama, validate=check_generation, concurrency=concurrency)
    return LocalChat(spec, trust_remote_code=trust_remote_code, batch_size=batch_size)


def llama_backend(spec: str, backend: str = "auto"):
    """The GGUF file llama.cpp should answer `spec` from, or None when transformers answers it."""
    from rung.core.gguf_in import gguf_source
    from rung.core.llama_chat import INSTALL, llama_cpp_installed
    from rung.core.settings import BACKENDS

    if backend not in BACKENDS:
        raise RungError(f'backend "{backend}": expected one of {", ".join(BACKENDS)}')
    if backend == "transformers":
        return None
    path = gguf_source(spec)
    if backend == "llama.cpp":
        if path is None:
            raise RungError(f"backend llama.cpp answers GGUF specs (a .gguf file, ollama:NAME, a named model); "
                            f"{spec} is not one: export it first (rung export {spec} --out DIR --format gguf)")
        if not llama_cpp_installed():
            raise RungError(INSTALL)
    return path if path is not None and llama_cpp_installed() else None
