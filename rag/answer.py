"""Retrieve, then generate an answer with a local causal LM that cites its sources as [1], [2].

The numbers map to the retrieved chunks, listed with their path and line under the answer. Any Hugging Face
causal LM id or local path works; `builtin:tiny` (the default, offline) is a ~2M-parameter toy that proves the
pipeline runs end to end: its answers are not meant to be useful, and the output says so.
"""

from __future__ import annotations

import re
from typing import Any

DEFAULT_GENERATOR = "builtin:tiny"
SYSTEM = ("Answer the question using only the numbered sources below. Cite the sources you use like [1] or [2]. "
          "If the sources do not contain the answer, say that you do not know.")
TOY_NOTE = ("builtin:tiny is a built-in toy model (about a million parameters): it shows the retrieve-then-generate pipeline runs, its text "
            "is not a real answer. Pass --model with an instruct model (a hub id or a local path) for real answers.")


def build_prompt(question: str, hits, tokenizer) -> str:
    blocks = []
    for n, hit in enumerate(hits, start=1):
        heading = f" — {hit.chunk['heading']}" if hit.chunk.get("heading") else ""
        blocks.append(f"[{n}] ({hit.where}{heading})\n{hit.chunk['text'].strip()}")
    user = "Sources:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # templates without a system role
            messages = [{"role": "user", "content": SYSTEM + "\n\n" + user}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{SYSTEM}\n\n{user}\nAnswer:"


def context_limit(model, tokenizer) -> int:
    limits = [getattr(model.config, name, None) for name in ("max_position_embeddings", "n_positions", "seq_length")]
    limits = [x for x in limits if isinstance(x, int) and x > 0]
    if limits:
        return min(limits)
    limit = getattr(tokenizer, "model_max_length", 2048)
    return limit if isinstance(limit, int) and limit < 1_000_000 else 2048


def check_generation(*, max_new_tokens: Any = 128, temperature: Any = 0.0, top_p: Any = 1.0, k: Any = 4) -> None:
    """Refuse settings no model could use, before any model loads: one line per problem, exit 2."""
    import math

    from rung.core.errors import RungError
    from rung.core.fileio import short
    from rung.core.vocab import MAX_NEW_TOKENS

    def number(value, whole=False):
        kinds = (int,) if whole else (int, float)
        return isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)

    problems = []
    if not number(max_new_tokens, whole=True) or max_new_tokens < 1:
        problems.append(f"--max-new-tokens must be a whole number, 1 or more (got {short(max_new_tokens, 30)})")
    elif max_new_tokens > MAX_NEW_TOKENS:
        problems.append(f"--max-new-tokens must be at most {MAX_NEW_TOKENS:,} (got {max_new_tokens:,})")
    if not number(temperature) or temperature < 0:
        problems.append(f"--temperature must be a finite number, 0 or more; 0 = greedy (got {short(temperature, 30)})")
    if not number(top_p) or not 0 < top_p <= 1:
        problems.append(f"--top-p must be above 0 and at most 1 (got {short(top_p, 30)})")
    if not number(k, whole=True) or k < 1:
        problems.append(f"-k must be a whole number, 1 or more (got {short(k, 30)})")
    if problems:
        raise RungError(problems)


def answer(rag_index, question: str, *, model: str = DEFAULT_GENERATOR, k: int = 4, max_new_tokens: int = 128,
           temperature: float = 0.0, top_p: float = 1.0, trust_remote_code: bool = False,
           api_base: str | None = None, api_key_env: str | None = None) -> dict[str, Any]:
    """{"question", "answer", "sources": [{n, source, line, page, heading, score, cited}], "model", "toy"}.

    temperature 0 (the default) decodes greedily; above 0 it samples, with top_p. `model` may be openai:NAME, a
    model behind an OpenAI-compatible endpoint (api_base, key from the api_key_env variable)."""
    check_generation(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, k=k)
    from rung.core.endpoint import is_endpoint

    hits = rag_index.search(question, k)
    if is_endpoint(model):
        from rung.core.generation import open_chat_model

        chat = open_chat_model(model, api_base=api_base, api_key_env=api_key_env)
        blocks = [f"[{n}] ({hit.where}{' — ' + hit.chunk['heading'] if hit.chunk.get('heading') else ''})\n"
                  f"{hit.chunk['text'].strip()}" for n, hit in enumerate(hits, start=1)]
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": "Sources:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"}]
        text = chat.chat([messages], max_new_tokens=max_new_tokens, temperature=temperature,
                         top_p=top_p if temperature > 0 else None)[0]
        return cited_answer(question, text, hits, model)
    import torch

    from rung.core.models import load_model_and_tokenizer

    lm, tokenizer = load_model_and_tokenizer(model, trust_remote_code=trust_remote_code)
    lm.eval()
    budget = context_limit(lm, tokenizer) - max_new_tokens
    if budget < 32:
        max_new_tokens = max(16, context_limit(lm, tokenizer) // 4)
        budget = context_limit(lm, tokenizer) - max_new_tokens
    getattr(tokenizer, "deprecation_warnings", {})["sequence-length-is-longer-than-the-specified-maximum"] = True
    used = list(hits)
    while True:  # drop the lowest-ranked sources until the prompt fits the model's context
        prompt = build_prompt(question, used, tokenizer)
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=not getattr(tokenizer, "chat_template", None))
        if ids["input_ids"].shape[1] <= budget or len(used) <= 1:
            break
        used = used[:-1]
    if ids["input_ids"].shape[1] > budget:  # one source still too long: keep the end (question, answer prompt)
        ids = {key: value[:, -budget:] for key, value in ids.items()}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else \
            {"do_sample": False}
        output = lm.generate(**ids, max_new_tokens=max_new_tokens, pad_token_id=pad, **sampling)
    text = tokenizer.decode(output[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    return cited_answer(question, text, used, model)


def cited_answer(question: str, text: str, used, model: str) -> dict[str, Any]:
    """The answer with its numbered sources, each marked cited when the answer names it ([n])."""
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", text)}
    sources = [{"n": n, "source": h.chunk["source"], "line": h.chunk["line"], "page": h.chunk.get("page"),
                "heading": h.chunk.get("heading", ""), "score": round(h.score, 4), "cited": n in cited}
               for n, h in enumerate(used, start=1)]
    return {"question": question, "answer": text, "sources": sources, "model": model,
            "toy": str(model).startswith("builtin:"),
            "note": TOY_NOTE.replace("builtin:tiny", str(model)) if str(model).startswith("builtin:") else None}
