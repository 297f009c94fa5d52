"""A GGUF file -> a cached safetensors model folder, once per file content (core/gguf_in.py finds the file).

transformers reads GGUF by dequantizing it, but a model loaded that way refuses `save_pretrained` ("quantized
with gguf and is not serializable"), and every load dequantizes again (~25-45 s for a 135M model on 2 cores).
So rung dequantizes once: the weights go into a plain model built from the same config without its
`quantization_config`, saved as safetensors with the tokenizer (and its chat template) and generation config,
under cache_root()/gguf-<sha256[:16]>. Before the folder is moved into place, the GGUF-loaded model and the
saved folder must give the same greedy tokens on a short prompt; a mismatch leaves nothing in the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Callable, Iterator

from rung.core.errors import RungError
from rung.core.gguf_in import GREEDY_CHECK_PROMPT, GREEDY_CHECK_TOKENS, GgufHeader, notice, read_header
from rung.core.model_cache import CHATML_TEMPLATE, cache_root, cached_build

PROVENANCE = "RUNG_GGUF.json"   # beside the converted weights: where they came from and the check's result
_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The file's sha256, streamed in 1 MiB reads; remembered per (path, size, mtime) for this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def converted_folder(path: Path, echo: Callable[[str], None] = notice) -> Path:
    """The cached safetensors folder for a GGUF file, converted and checked on first use."""
    target = cache_root() / f"gguf-{file_sha256(path)[:16]}"
    if (target / "config.json").exists() and (target / PROVENANCE).exists():
        return target
    header = read_header(path)
    echo(f"converting {path.name} ({header.file_type}, {header.architecture}, {path.stat().st_size / 1e6:,.0f} MB) "
         "to a safetensors folder, once (a 135M model takes ~30-60 s on 2 cores)")
    outcome: dict[str, str] = {}
    cached_build(target, lambda staging: outcome.update(convert_into(path, header, staging)), "gguf")
    echo(f"converted {path.name} ({header.file_type}, {header.architecture}) -> {target}; "
         f"greedy check: {outcome.get('check', 'done by another process')}")
    if outcome.get("warning"):
        echo(outcome["warning"])
    return target


@contextlib.contextmanager
def _no_tensor_bar() -> Iterator[None]:
    """transformers draws a tqdm bar per GGUF tensor, outside its own progress-bar switch; rung prints one line."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = gguf_utils.tqdm
    gguf_utils.tqdm = lambda items, **_: items
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def _plain_copy(loaded):
    """The GGUF-loaded model's weights in a model that saves: same config, no quantization_config."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = copy.deepcopy(loaded.generation_config)
    return plain


def _greedy(model, ids) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=GREEDY_CHECK_TOKENS, temperature=None, top_p=None, top_k=None,
                             pad_token_id=model.generation_config.pad_token_id or 0)
    return out[0, ids.shape[1]:].tolist()


def convert_into(path: Path, header: GgufHeader, staging: Path) -> dict[str, str]:
    """Dequantize `path` into `staging` and check it; returns {"check": ..., "warning": ...}."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import transformers

    transformers.logging.set_verbosity_error()  # rung prints its own two lines
    folder, name = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        with _no_tensor_bar():
            loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, NotImplementedError, RuntimeError) as error:
        raise RungError(f"{path}: transformers could not read this GGUF ({header.architecture}, "
                        f"{header.file_type}): {type(error).__name__}: {str(error).splitlines()[0]}") from None
    warning = ""
    plain = _plain_copy(loaded)
    if tokenizer.chat_template is None:
        # a base model: the documented default (docs/models-and-safety.md), with its tokens when the vocabulary lacks them
        tokenizer.chat_template = CHATML_TEMPLATE
        new = [t for t in ("<|im_start|>", "<|im_end|>") if t not in tokenizer.get_vocab()]
        if new:
            tokenizer.add_special_tokens({"additional_special_tokens": new})
            plain.resize_token_embeddings(len(tokenizer))
        warning = (f"warning: {path.name} has no chat template; rung gave it ChatML (<|im_start|>role ... "
                   "<|im_end|>), the default in docs/models-and-safety.md")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if plain.generation_config.pad_token_id is None:
        plain.generation_config.pad_token_id = tokenizer.pad_token_id
    # plain text, not the chat template: ChatML tokens added above are new to the GGUF-loaded model
    ids = tokenizer(GREEDY_CHECK_PROMPT, return_tensors="pt")["input_ids"]
    expected = _greedy(loaded, ids)
    del loaded
    plain.save_pretrained(staging)  # safetensors
    tokenizer.save_pretrained(staging)
    del plain
    reloaded = AutoModelForCausalLM.from_pretrained(str(staging), dtype=torch.float32, use_safetensors=True)
    got = _greedy(reloaded, ids)
    if got != expected:
        raise RungError(f"{path}: the converted folder does not reproduce the GGUF's greedy tokens "
                        f"({sum(a == b for a, b in zip(got, expected))}/{len(expected)} agree); nothing was cached")
    check = f"identical ({len(expected)} tokens)"
    provenance = {"source": str(path), "sha256": file_sha256(path),
                  "architecture": header.architecture, "file_type": header.file_type, "name": header.name,
                  "greedy_check": {"prompt": GREEDY_CHECK_PROMPT, "tokens": expected, "result": check},
                  "chat_template": "ChatML default (the GGUF has none)" if warning else "the GGUF's own"}
    (staging / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return {"check": check, "warning": warning}

