"""The merged model in the standard Hugging Face layout: config.json, model.safetensors (sharded when large),
generation_config.json, tokenizer.json, tokenizer_config.json and chat_template.jinja.

`AutoModelForCausalLM.from_pretrained(folder)` loads it alone, and so do vLLM (`vllm serve folder`), TGI and
llama.cpp's convert_hf_to_gguf.py. The weights keep the dtype the base model was loaded in (its checkpoint's);
the LoRA adapter, when there was one, is folded in: W = W_base + (alpha / r) * B @ A (PEFT merge_and_unload).
The chat template keeps transformers' {% generation %} markers: they render nothing, and TRL needs them to
train on the folder again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_safetensors(model, tokenizer, folder: Path) -> dict[str, Any]:
    """Save model and tokenizer into `folder` (which exists). Returns {"files": [...], "dtype": "..."}."""
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return {"files": sorted(p.name for p in folder.iterdir()), "dtype": str(model.dtype).replace("torch.", "")}
