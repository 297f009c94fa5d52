"""builtin:tiny-base, the demo's stage-1 base model: builtin:tiny after a short pretraining, cached."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rung.core.settings import CPTSettings
from rung.trainers.cpt.loop import train_cpt


# Everything that decides builtin:tiny-base's bytes (with builtin:tiny's own spec): change it, the cache key changes.
TINY_BASE_SPEC: dict[str, Any] = {
    "version": 1,
    "settings": {"adapter": "full", "max_length": 128, "per_device_train_batch_size": 8,
                 "learning_rate": 2e-3, "warmup_ratio": 0.05, "num_train_epochs": 3.0, "weight_decay": 0.01,
                 "seed": 0, "eval_strategy": "no", "save_strategy": "no", "logging_steps": 25,
                 "max_eval_samples": 16, "eval_fraction": 0.0},
}


def pretrained_tiny_path() -> Path:
    """builtin:tiny after a short pretraining on Python's help topics (~1–2 min on 2 cores, once, cached).

    It writes English-looking text but knows no format: the demo's "stage 1" base model. The topics it
    trains on exclude trainers.forgetting's general-text slice, so that slice stays held out.
    """
    from rung.trainers import forgetting
    from rung.core.models import TINY_SPEC, spec_key, builtin_tiny_path, cache_root, cached_build

    key = spec_key({"tiny": TINY_SPEC, "base": TINY_BASE_SPEC, "topics": forgetting.pretraining_topic_names()})

    def build(staging: Path) -> Path:
        corpus = staging / "corpus"
        corpus.mkdir()
        for name, text in forgetting.pretraining_topics():
            (corpus / f"{name}.txt").write_text(text, encoding="utf-8")
        settings = CPTSettings(model_name_or_path=str(builtin_tiny_path()), **TINY_BASE_SPEC["settings"])
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a 128-wide model gains nothing from a second thread, and loses 4-40x
        try:                      # when that core is busy (docs/development.md, "Measured on 2 cores")
            result = train_cpt(settings, [corpus], staging / "run")
        finally:
            torch.set_num_threads(threads)
        model = Path(result["model_dir"])
        (model / "RUNG_BUILTIN.md").write_text(
            "builtin:tiny-base — builtin:tiny after a short pretraining on Python's help topics "
            f"(PSF licence), by rung. Train loss {result['first_loss']:.2f} → {result['final_loss']:.2f}.\n"
            f"spec: {json.dumps(TINY_BASE_SPEC)}\n")
        return model

    return cached_build(cache_root() / f"builtin-tiny-base-{key}", build, "tiny-base")

