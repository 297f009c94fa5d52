"""builtin:tiny is built locally, seeded and cached; model specs resolve without touching the network."""

from __future__ import annotations

import pytest

from rung.core.errors import RungError
from rung.core.models import CHATML_TEMPLATE, builtin_tiny_path, load_model_and_tokenizer, resolve_model


def test_builtin_tiny_is_cached_and_loads(tiny_model_dir):
    assert builtin_tiny_path() == tiny_model_dir  # second call reuses the cache
    assert (tiny_model_dir / "model.safetensors").exists()
    assert not list(tiny_model_dir.glob("*.bin"))  # safetensors only
    model, tokenizer = load_model_and_tokenizer("builtin:tiny")
    params = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < params < 5_000_000
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.chat_template == CHATML_TEMPLATE


def test_builtin_tiny_is_the_same_every_time(tmp_path, monkeypatch, tiny_model_dir):
    """A fresh cache rebuilds byte-identical weights and tokenizer (seeded)."""
    monkeypatch.setenv("RUNG_CACHE", str(tmp_path))
    rebuilt = builtin_tiny_path()
    assert rebuilt != tiny_model_dir
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (rebuilt / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name


def test_chat_template_marks_assistant_tokens_and_ends_turns_with_eos():
    _, tokenizer = load_model_and_tokenizer("builtin:tiny")
    chat = [{"role": "user", "content": "count users"}, {"role": "assistant", "content": "SELECT 1;"}]
    encoded = tokenizer.apply_chat_template(chat, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    assistant_ids = [i for i, m in zip(ids, mask) if m]
    assert tokenizer.decode(assistant_ids) == "SELECT 1;<|im_end|>"


def test_model_specs_resolve_without_network(tmp_path):
    assert resolve_model("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"  # a hub id passes through untouched
    with pytest.raises(RungError, match="does not exist"):
        resolve_model(str(tmp_path / "missing-model"))
    with pytest.raises(RungError, match="not a model folder"):
        resolve_model(str(tmp_path))
    with pytest.raises(RungError, match="unknown built-in model"):
        resolve_model("builtin:huge")


def test_qlora_on_cpu_is_one_clear_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    with pytest.raises(RungError) as info:
        load_model_and_tokenizer("builtin:tiny", quantization="4bit")
    assert "CUDA" in info.value.message and "\n" not in info.value.message
