"""Training settings: one dataclass per pipeline, using TRL's own field names.

Pure Python (no torch) so the advisor can write them into plan.yaml and `rung run` can validate them
before any heavy import. Precedence: dataclass default < plan.yaml `settings` < command-line flag.
Each dataclass becomes a TRL config through one builder function in its pipeline file
(trainers/sft.py, dpo.py, cpt.py); rung-only fields are listed in RUNG_ONLY_FIELDS and are not passed on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from rung.core.errors import RungError, did_you_mean


@dataclass
class CommonSettings:
    # --- model (TRL ModelConfig names) ---
    model_name_or_path: str = "builtin:tiny"
    trust_remote_code: bool = False  # off unless the user asks: remote code runs on your machine
    # --- adapter: lora | qlora | full (rung); LoRA fields use TRL ModelConfig names ---
    adapter: str = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: Any = "all-linear"  # every linear layer (QLoRA paper: all layers beat attention-only)
    lora_modules_to_save: list[str] | None = None
    # --- optimisation (transformers TrainingArguments names) ---
    num_train_epochs: float = 3.0
    max_steps: int = -1
    per_device_train_batch_size: int = 4
    per_device_eval_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4  # LoRA rate; full fine-tuning wants ~1e-5
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    bf16: bool | None = None  # None: on when the GPU supports it, off on CPU
    seed: int = 42
    # --- evaluation, logging, checkpoints ---
    eval_fraction: float = 0.1  # rung: held-out share of the data when no eval file is given
    eval_strategy: str = "steps"
    eval_steps: int = 50
    logging_steps: int = 10
    save_strategy: str = "steps"
    save_steps: int = 50
    save_total_limit: int | None = 2


@dataclass
class SFTSettings(CommonSettings):
    max_length: int | None = 1024
    packing: bool = False
    assistant_only_loss: bool | None = None  # None: on for messages rows when the template has {% generation %} markers
    completion_only_loss: bool | None = None
    eos_token: str | None = None


@dataclass
class DPOSettings(CommonSettings):
    learning_rate: float = 5e-5  # LoRA DPO; full-weight DPO wants ~5e-7 (DPO paper: 1e-6)
    num_train_epochs: float = 1.0
    beta: float = 0.1
    loss_type: str = "sigmoid"
    max_length: int | None = 1024


@dataclass
class CPTSettings(CommonSettings):
    adapter: str = "full"
    learning_rate: float = 1e-4
    num_train_epochs: float = 1.0
    max_length: int = 1024  # block size: documents are packed into blocks of this many tokens
    lora_modules_to_save: list[str] | None = None  # e.g. ["embed_tokens", "lm_head"] for trainable embeddings
    eos_token: str | None = None
    general_ppl_warn_ratio: float = 1.2  # rung: warn when general-text perplexity rises past 1.2x its start
    torch_compile: bool = False
    gradient_checkpointing: bool | None = None  # None: on with a GPU, off on CPU
    max_eval_samples: int = 64  # held-out blocks per eval slice (domain and general), as in run_clm.py


RUNG_ONLY_FIELDS = frozenset(
    {"model_name_or_path", "trust_remote_code", "adapter", "lora_r", "lora_alpha", "lora_dropout",
     "lora_target_modules", "lora_modules_to_save", "eval_fraction", "general_ppl_warn_ratio", "eos_token_id",
     "max_eval_samples"}
)

ADAPTERS = ("lora", "qlora", "full")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def check_keys(cls: type, values: Mapping[str, Any], where: str) -> list[str]:
    """Problems for keys that `cls` does not have, each with a did-you-mean."""
    known = field_names(cls)
    return [f'{where}: unknown setting "{key}"{did_you_mean(key, known)}' for key in values if key not in known]


def resolve(cls: type, *layers: Mapping[str, Any] | None, where: str = "settings"):
    """Build `cls` from layers applied in order (plan.yaml, then CLI flags). Unknown keys fail, all at once."""
    merged: dict[str, Any] = {}
    problems: list[str] = []
    for layer in layers:
        if not layer:
            continue
        problems += check_keys(cls, layer, where)
        merged.update({k: v for k, v in layer.items() if v is not None or k in ("bf16", "save_total_limit")})
    if problems:
        raise RungError(problems)
    settings = cls(**{k: v for k, v in merged.items() if k in field_names(cls)})
    if settings.adapter not in ADAPTERS:
        raise RungError(f'{where}: adapter "{settings.adapter}" is not one of {", ".join(ADAPTERS)}'
                        f"{did_you_mean(str(settings.adapter), ADAPTERS)}")
    return settings


def to_dict(settings: Any) -> dict[str, Any]:
    return dataclasses.asdict(settings)


SETTINGS_BY_ENGINE = {"sft": SFTSettings, "dpo": DPOSettings, "cpt": CPTSettings}
