"""Generate with a loaded model (core/models.py load_for_inference: a model folder, an adapter folder (PEFT) or
builtin:tiny): one answer, a batch of sample answers, or an interactive chat."""

from __future__ import annotations

from typing import Any, Callable


def stop_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.insert(0, tokenizer.eos_token_id)
    return ids


def as_messages(prompt: Any, system: str | None = None) -> list[dict] | str:
    if isinstance(prompt, list):
        return prompt
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": prompt}]


def generate(model, tokenizer, prompt: Any, *, system: str | None = None, max_new_tokens: int = 128,
             temperature: float = 0.0, raw: bool = False) -> str:
    """One answer. `prompt` is text or a list of messages; the chat template is applied unless raw."""
    import torch

    if raw and isinstance(prompt, str):
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer.apply_chat_template(as_messages(prompt, system), add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
    ids = ids.to(model.device)
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "eos_token_id": stop_ids(model, tokenizer),
                               "pad_token_id": tokenizer.pad_token_id}
    if temperature > 0:
        options.update(do_sample=True, temperature=temperature)
    else:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    with torch.no_grad():
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **options)
    return tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True).strip()


# Greedy decoding of a base model often loops on one token (builtin:tiny-base emits only newlines after a
# chat prompt). Banning a repeated 8-gram breaks such loops yet leaves normal answers alone: no answer in
# the shipped SQL data repeats an 8-gram. Used for samples before and after, so the comparison stays fair.
SAMPLE_NO_REPEAT_NGRAM = 8


def answers(model, tokenizer, prompts: list[Any], max_new_tokens: int = 64) -> list[str]:
    """Greedy answers (no repeated 8-gram) to several prompts in one batched generate call (left padding)."""
    import torch

    if not prompts:
        return []
    was_training = model.training
    model.eval()
    try:
        rows = [tokenizer.apply_chat_template(as_messages(p), add_generation_prompt=True, return_dict=True)["input_ids"]
                for p in prompts]
        width = max(len(r) for r in rows)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rows], device=model.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=model.device)
        with torch.no_grad():
            output = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                    do_sample=False, temperature=None, top_p=None, top_k=None,
                                    no_repeat_ngram_size=SAMPLE_NO_REPEAT_NGRAM,
                                    eos_token_id=stop_ids(model, tokenizer), pad_token_id=pad)
        return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in output]
    finally:
        if was_training:
            model.train()


def chat_loop(reply_to: Callable[[list[dict]], str], *, system: str | None, read: Callable[[str], str],
              echo: Callable[[str], None]) -> None:
    """Interactive chat keeping the conversation; /reset clears it, /quit (or end of input) leaves.
    `reply_to(messages)` answers the conversation so far (a local model or an endpoint)."""
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    echo("Chat: type a message; /reset clears the conversation, /quit leaves.")
    while True:
        try:
            line = read("you> ")
        except (EOFError, KeyboardInterrupt):
            echo("")
            return
        text = line.strip()
        if text in ("/quit", "/exit"):
            return
        if text == "/reset":
            history = history[:1] if system else []
            echo("(conversation cleared)")
            continue
        if not text:
            continue
        history.append({"role": "user", "content": text})
        try:
            reply = reply_to(history)
        except KeyboardInterrupt:  # Ctrl-C abandons this answer, not the chat; at the prompt it leaves
            history.pop()
            echo("(interrupted; Ctrl-C again at the prompt leaves)")
            continue
        history.append({"role": "assistant", "content": reply})
        echo(f"model> {reply}")
