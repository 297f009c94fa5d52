"""rung trainers: SFT, DPO and continued pretraining on TRL, PEFT and accelerate."""

if not __name__.startswith("rung."):  # the repository root is the package: `import trainers` there is a second copy
    raise ImportError(f"import rung.{__name__}, not {__name__}: the repository root is the package rung")

from pathlib import Path

from rung.core.models import register_builtin


def _tiny_base() -> Path:
    from rung.trainers.cpt.base_model import pretrained_tiny_path  # stage 1: a short pretraining, cached

    return pretrained_tiny_path()


register_builtin("tiny-base", _tiny_base)
