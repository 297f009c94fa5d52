"""Greedy answers for several prompts in one llama.cpp context: one decode call per step for all of them.

llama-cpp-python's `Llama` generates one sequence per context, so every step multiplies the weights by one
vector; transformers batches 8 rows and multiplies by a matrix, which on a CPU is most of its speed. This
module uses llama.cpp's own batch API (llama_batch with one sequence id per row, a unified KV cache) through
the bindings llama-cpp-python ships: the prompts are prefilled together, then each step decodes the next token
of every unfinished row at once and takes its argmax (greedy; temperature 0 only). core/llama_chat.py calls it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rung.core.errors import RungError


def greedy_batch(llm: Any, prompts: list[list[int]], max_new_tokens: int, n_threads: int) -> list[list[int]]:
    """The greedy continuation (token ids, end-of-generation token excluded) of each prompt, in order."""
    import llama_cpp

    model = llm._model.model  # noqa: SLF001 - the loaded weights, shared; this context is our own
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    per_row = max(len(p) for p in prompts) + max_new_tokens
    params = llama_cpp.llama_context_default_params()
    params.n_seq_max = len(prompts)
    params.kv_unified = True  # one cache for every row: n_ctx is their sum, not split into equal slices
    params.n_ctx = per_row * len(prompts)
    params.n_batch = params.n_ubatch = min(512, params.n_ctx)
    params.n_threads = params.n_threads_batch = n_threads
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        raise RungError(f"llama.cpp could not make a context of {params.n_ctx} tokens for {len(prompts)} rows")
    batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
    try:
        # prefill, in chunks of n_batch tokens; only each prompt's last position asks for logits, read after the
        # chunk's decode (the next decode overwrites them)
        work = [(row, pos, token) for row, prompt in enumerate(prompts) for pos, token in enumerate(prompt)]
        answers: list[list[int]] = [[] for _ in prompts]
        nexts: dict[int, int] = {}
        for start in range(0, len(work), params.n_batch):
            chunk = [(row, pos, token, pos == len(prompts[row]) - 1)
                     for row, pos, token in work[start:start + params.n_batch]]
            _fill(batch, chunk)
            _decode(llama_cpp, ctx, batch)
            ends = {row: i for i, (row, _, _, last) in enumerate(chunk) if last}
            nexts.update(_argmax(llama_cpp, ctx, ends, n_vocab))
        while nexts:
            step = []
            for row, token in sorted(nexts.items()):
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    continue
                answers[row].append(token)
                if len(answers[row]) < max_new_tokens:
                    step.append((row, len(prompts[row]) + len(answers[row]) - 1, token, True))
            if not step:
                break
            _fill(batch, step)
            _decode(llama_cpp, ctx, batch)
            nexts = _argmax(llama_cpp, ctx, {row: i for i, (row, *_rest) in enumerate(step)}, n_vocab)
        return answers
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


def _fill(batch: Any, items: list[tuple[int, int, int, bool]]) -> None:
    for i, (row, pos, token, wants_logits) in enumerate(items):
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = row
        batch.logits[i] = wants_logits
    batch.n_tokens = len(items)


def _decode(llama_cpp: Any, ctx: Any, batch: Any) -> None:
    code = llama_cpp.llama_decode(ctx, batch)
    if code != 0:
        raise RungError(f"llama.cpp decode failed (code {code}): the batch does not fit its context")


def _argmax(llama_cpp: Any, ctx: Any, positions: dict[int, int], n_vocab: int) -> dict[int, int]:
    """{row: the most likely next token} from the logits at each row's batch position."""
    out = {}
    for row, index in positions.items():
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(n_vocab,))
        out[row] = int(logits.argmax())
    return out
