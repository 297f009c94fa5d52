"""A GGUF answered by llama.cpp in this process (llama-cpp-python): the ChatModel that probe and gate use for a
GGUF spec when `rung[export]` is installed (core/generation.py open_chat_model, backend auto or llama.cpp).

    conversations ─► the GGUF's own chat template (ChatML when it has none), rendered with llama-cpp-python's
                     Jinja formatter and tokenized by llama.cpp ─► the last (context - max_new_tokens) tokens
                  ─► greedy (temperature 0): the rows split across `instances` threads (llama.cpp releases the
                     GIL), each decoding its share as ONE batch in its own context on the shared weights
                     (core/llama_batch.py), with cores // instances threads, so the total stays within the cores
                  ─► sampling (temperature > 0): a pool of Llama instances, one row at a time each, llama.cpp's
                     sampler; their context is sized from the longest prompt plus max_new_tokens (rounded up to
                     256 tokens, at most the training context), rebuilt when a later call needs more

Batched rows give slightly different greedy tokens than one row alone (other kernels, other rounding), as
transformers' padded batches do. Heavy imports live in the functions.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

from rung.core.errors import RungError

Conversation = list[dict[str, str]]
CONTEXT_STEP = 256
INSTALL = 'llama.cpp answering needs llama-cpp-python: pip install "rung[export]" (it compiles ~6 min once)'


def llama_cpp_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_PARAMS_LOCK = threading.Lock()


def repacking_off() -> Callable[[], None]:
    """Make llama-cpp-python build every model with llama.cpp's CPU weight repacking off; returns the undo.
    With it on, llama-cpp-python 0.3.36 segfaults in its first decode of Q4_1 and Q8_0 files on the AVX-512/AMX
    machines here (SmolLM2's Q4_1, builtin:tiny's q8_0 export; an F16 file ran either way); off, they answer.
    Llama() takes no switch for it, so its default model parameters are wrapped."""
    from llama_cpp import llama as llama_module

    bindings = llama_module.llama_cpp
    defaults = bindings.llama_model_default_params

    def no_repack():
        params = defaults()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    bindings.llama_model_default_params = no_repack
    return lambda: setattr(bindings, "llama_model_default_params", defaults)


def open_llama(path: str | Path, **kwargs: Any) -> Any:
    """llama_cpp.Llama, quiet, with llama.cpp's CPU weight repacking off (repacking_off)."""
    from llama_cpp import Llama

    with _PARAMS_LOCK:
        undo = repacking_off()
        try:
            llm = Llama(model_path=str(path), verbose=False, **kwargs)
        finally:
            undo()
    # freed before the interpreter tears its modules down: Llama.__del__ at that point prints a TypeError
    atexit.register(llm.close)
    return llm


def plain_template(template: str) -> str:
    """rung's ChatML carries {% generation %} markers for TRL; plain Jinja does not know them."""
    for marker in ("{% generation %}", "{% endgeneration %}", "{%- generation %}", "{%- endgeneration %}"):
        template = template.replace(marker, "")
    return template


class LlamaCppChat:
    """Greedy (temperature 0) or sampled answers from a GGUF file through llama.cpp, `instances` rows at once."""

    def __init__(self, spec: str, path: Path, *, validate: Callable[..., list[str]], concurrency: int = 4,
                 cores: int | None = None):
        self.spec = spec
        self.validate = validate  # core/generation.py check_generation (passed in: generation imports this module)
        self.path = Path(path)
        cores = cores or usable_cores()
        self.instances = max(1, min(concurrency, cores))
        self.threads = max(1, cores // self.instances)
        # rows engines hand over at once (a progress line each): 8 per instance, decoded as one batch
        self.rows_per_call = 8 * self.instances
        self._vocab: Any = None
        self._formatter: Any = None
        self._pool: queue.Queue | None = None
        self._n_ctx = 0
        self._usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0}

    def loaded(self) -> Any:
        """The tokenizer instance (llama.cpp's, a tiny context) and the chat formatter, on first use."""
        if self._vocab is None:
            if not llama_cpp_installed():
                raise RungError(INSTALL)
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            from rung.core.model_cache import CHATML_TEMPLATE

            # a 64-token context, not vocab_only: a vocab-only model has no training context and llama.cpp
            # prints a warning line about it; the weights are memory-mapped and shared with the pool
            vocab = open_llama(self.path, n_ctx=64, n_threads=1)
            template = vocab.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
            token = vocab._model.token_get_text  # noqa: SLF001 - the template's bos/eos strings
            self._formatter = Jinja2ChatFormatter(
                template=plain_template(template), eos_token=token(vocab.token_eos()),
                bos_token=token(vocab.token_bos()) if vocab.token_bos() >= 0 else "")
            self._vocab = vocab
        return self._vocab

    def prompt_tokens(self, conversation: Conversation) -> list[int]:
        vocab = self.loaded()
        prompt = self._formatter(messages=conversation).prompt
        return vocab.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def _ensure_pool(self, n_ctx: int) -> queue.Queue:
        if self._pool is None or n_ctx > self._n_ctx:
            while self._pool is not None and not self._pool.empty():  # the old instances go first
                self._pool.get().close()
            pool: queue.Queue = queue.Queue()
            for _ in range(self.instances):
                pool.put(open_llama(self.path, n_ctx=n_ctx, n_threads=self.threads, n_threads_batch=self.threads,
                                    n_batch=min(512, n_ctx)))
            self._pool, self._n_ctx = pool, n_ctx
        return self._pool

    def chat(self, conversations: list[Conversation], *, max_new_tokens: int, temperature: float = 0.0,
             top_p: float | None = None) -> list[str]:
        problems = self.validate(max_new_tokens, temperature, top_p)
        if problems:
            raise RungError(problems)
        if not conversations:
            return []
        started = time.perf_counter()
        metadata = self.loaded().metadata
        window = int(metadata.get(f"{metadata.get('general.architecture')}.context_length") or 4096)
        budget = max(16, window - max_new_tokens)
        prompts = [self.prompt_tokens(c)[-budget:] for c in conversations]
        if temperature == 0:
            results = self._greedy(prompts, max_new_tokens)
        else:
            results = self._sampled(prompts, max_new_tokens, window, float(temperature), top_p)
        self._usage["requests"] += len(prompts)
        self._usage["prompt_tokens"] += sum(len(p) for p in prompts)
        self._usage["completion_tokens"] += sum(n for _, n in results)
        self._usage["seconds"] += time.perf_counter() - started
        return [text for text, _ in results]

    def _greedy(self, prompts: list[list[int]], max_new_tokens: int) -> list[tuple[str, int]]:
        """Greedy: the rows split across `instances` threads, each decoding its share as one batch in its own
        context on the shared weights (core/llama_batch.py)."""
        from concurrent.futures import ThreadPoolExecutor

        from rung.core.llama_batch import greedy_batch

        llm = self.loaded()
        shares = [list(range(i, len(prompts), self.instances)) for i in range(min(self.instances, len(prompts)))]
        with ThreadPoolExecutor(max_workers=len(shares)) as workers:
            done = list(workers.map(lambda rows: greedy_batch(llm, [prompts[r] for r in rows], max_new_tokens,
                                                               self.threads), shares))
        tokens: dict[int, list[int]] = {r: out for rows, outs in zip(shares, done) for r, out in zip(rows, outs)}
        return [(llm.detokenize(tokens[r]).decode("utf-8", "replace").strip(), len(tokens[r]))
                for r in range(len(prompts))]

    def _sampled(self, prompts: list[list[int]], max_new_tokens: int, window: int, temperature: float,
                 top_p: float | None) -> list[tuple[str, int]]:
        """Sampling (temperature > 0): one row at a time per pooled instance, llama.cpp's own sampler."""
        from concurrent.futures import ThreadPoolExecutor

        needed = max(len(p) for p in prompts) + max_new_tokens
        pool = self._ensure_pool(min(window, -(-needed // CONTEXT_STEP) * CONTEXT_STEP))

        def answer(tokens: list[int]) -> tuple[str, int]:
            llm = pool.get()
            try:
                out = llm.create_completion(prompt=tokens, max_tokens=max_new_tokens, temperature=temperature,
                                            top_p=1.0 if top_p is None else float(top_p), repeat_penalty=1.0)
            finally:
                pool.put(llm)
            return str(out["choices"][0]["text"]).strip(), int(out["usage"]["completion_tokens"])

        with ThreadPoolExecutor(max_workers=self.instances) as workers:
            return list(workers.map(answer, prompts))

    @property
    def usage(self) -> dict[str, Any]:
        """Totals over every chat() call: requests (rows), prompt and completion tokens, seconds."""
        return {**self._usage, "seconds": round(self._usage["seconds"], 3), "backend": "llama.cpp",
                "instances": self.instances, "threads_each": self.threads}
