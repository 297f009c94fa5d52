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
from rung.core.inputs import MERGE_MARKER


def check_merge(adapter_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> None:
    """Every problem with a merge, before torch loads or a byte is written: an adapter folder (not full
    weights, not a file), and an --out that is new, empty, an earlier merge, or --overwrite."""
    from rung.core.inputs import out_dir_problems
    from rung.core.models import is_adapter_dir

    adapter_dir = Path(adapter_dir).expanduser()
    problems = []
    if not is_adapter_dir(adapter_dir):
        if (adapter_dir / "config.json").is_file():
            problems.append(f"{adapter_dir} holds full model weights, not an adapter: nothing to merge, load it directly")
        elif adapter_dir.is_dir():
            problems.append(f"{adapter_dir}: not an adapter folder (no adapter_config.json)")
        else:
            from rung.core.inputs import source_problem

            problems.append(source_problem(adapter_dir, "adapter folder") or f"{adapter_dir}: not an adapter folder")
    problems += out_dir_problems(out_dir, overwrite=overwrite, marker=MERGE_MARKER)
    if problems:
        raise RungError(problems)


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, *, trust_remote_code: bool = False,
                  overwrite: bool = False, echo: Callable[[str], None] = click.echo) -> Path:
    """Merge into a temporary sibling of out_dir, then move it into place: a failed merge leaves no
    half-written folder (and an --overwrite leaves the folder's other files alone)."""
    import os
    import shutil

    from rung.core.fileio import os_error_text, staging_dir
    from rung.core.models import adapter_base, load_for_inference
    from rung.trainers.common import quiet_libraries

    adapter_dir, out_dir = Path(adapter_dir).expanduser(), Path(out_dir).expanduser()
    check_merge(adapter_dir, out_dir, overwrite=overwrite)
    quiet_libraries()
    base = adapter_base(adapter_dir)
    echo(f"Merging {adapter_dir} into {base} ...")
    model, tokenizer = load_for_inference(str(adapter_dir), trust_remote_code=trust_remote_code)
    if getattr(model.base_model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_4bit", False):
        raise RungError("cannot merge into a 4-bit model; load the base in bf16 (rung loads it unquantized here)")
    merged = model.merge_and_unload()
    staging = staging_dir(out_dir, "merging")
    try:
        merged.save_pretrained(str(staging))   # safetensors
        tokenizer.save_pretrained(str(staging))
        info: dict[str, Any] = {"merged_from": {"adapter": str(adapter_dir), "base_model": base}}
        atomic_write_yaml(staging / MERGE_MARKER, info)
        if not out_dir.exists() or not any(out_dir.iterdir()):
            if out_dir.exists():
                out_dir.rmdir()
            os.replace(staging, out_dir)
        else:  # an earlier merge or --overwrite: same-named files are replaced, one rename each
            for item in staging.iterdir():
                target = out_dir / item.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(item, target)
    except OSError as error:
        raise RungError(os_error_text(error, "write the merged model to", out_dir)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    n = sum(p.numel() for p in merged.parameters())
    echo(f"Merged model ({n:,} parameters) written to {out_dir}: loads with AutoModelForCausalLM.from_pretrained alone")
    return out_dir

