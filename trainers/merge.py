"""Merge a LoRA adapter into its base model: a folder that AutoModelForCausalLM loads alone, tokenizer included.

merged W = W_base + (alpha / r) * B @ A for every adapted layer (PEFT's merge_and_unload), saved as safetensors
in the base model's dtype. The chat template and EOS settings of the run travel with the tokenizer and the
generation config, so the merged model stops where the adapter did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_yaml


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, *, trust_remote_code: bool = False,
                  echo: Callable[[str], None] = click.echo) -> Path:
    from rung.trainers.common import quiet_libraries
    from rung.core.models import adapter_base, is_adapter_dir, load_for_inference

    adapter_dir, out_dir = Path(adapter_dir).expanduser(), Path(out_dir).expanduser()
    if not is_adapter_dir(adapter_dir):
        if (adapter_dir / "config.json").exists():
            raise RungError(f"{adapter_dir} holds full model weights, not an adapter: nothing to merge, load it directly")
        raise RungError(f"{adapter_dir}: not an adapter folder (no adapter_config.json)")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RungError(f"{out_dir} exists and is not empty; choose another --out")
    quiet_libraries()
    base = adapter_base(adapter_dir)
    echo(f"Merging {adapter_dir} into {base} ...")
    model, tokenizer = load_for_inference(str(adapter_dir), trust_remote_code=trust_remote_code)
    if getattr(model.base_model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_4bit", False):
        raise RungError("cannot merge into a 4-bit model; load the base in bf16 (rung loads it unquantized here)")
    merged = model.merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir))   # safetensors
    tokenizer.save_pretrained(str(out_dir))
    info: dict[str, Any] = {"merged_from": {"adapter": str(adapter_dir), "base_model": base}}
    atomic_write_yaml(out_dir / "rung_merge.yaml", info)
    n = sum(p.numel() for p in merged.parameters())
    echo(f"Merged model ({n:,} parameters) written to {out_dir}: loads with AutoModelForCausalLM.from_pretrained alone")
    return out_dir
