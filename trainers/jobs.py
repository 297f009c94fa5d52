"""Job files and what a launched process needs to know about its launch.

RUN/<pipeline>_job.json holds what a launched worker reads (trainers/worker.py): the pipeline, the resolved
settings, the output folder and the data. trainers/launch.py writes it beside the accelerate config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_json

PIPELINES = ("sft", "dpo", "cpt", "grpo")


def job_file(out_dir: Path, pipeline: str) -> Path:
    return Path(out_dir) / f"{pipeline}_job.json"


def write_job(out_dir: Path, pipeline: str, settings: Any, **fields: Any) -> Path:
    """RUN/<pipeline>_job.json: what a launched worker reads (the pipeline, resolved settings, out_dir, data...)."""
    from rung.core.settings import to_dict

    if pipeline not in PIPELINES:
        raise RungError(f'pipeline "{pipeline}" is not one of {", ".join(PIPELINES)}')
    path = job_file(out_dir, pipeline)
    atomic_write_json(path, {"pipeline": pipeline, "settings": to_dict(settings),
                             "out_dir": str(Path(out_dir).resolve()), **fields})
    return path


def read_job(path: str | os.PathLike) -> dict[str, Any]:
    from rung.core.fileio import read_text

    try:
        job = json.loads(read_text(Path(path), what="job file"))
    except ValueError as error:
        raise RungError(f"{path}: not a rung job file ({error})") from None
    if not isinstance(job, dict) or not isinstance(job.get("settings"), dict):
        raise RungError(f"{path}: not a rung job file (no settings mapping)")
    job.setdefault("pipeline", "cpt")  # job files written before SFT/DPO launched were CPT's
    if job["pipeline"] not in PIPELINES:
        raise RungError(f'{path}: pipeline "{job["pipeline"]}" is not one of {", ".join(PIPELINES)}')
    return job


def job_settings(cls: type, job: dict[str, Any]):
    """The job's settings as `cls`, ignoring fields this version does not have."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in job["settings"].items() if k in fields})



# ---------------------------------------------------------------------------------------------- in a worker


def launched_strategy() -> str | None:
    """In a process `accelerate launch` started: "fsdp", "zero2", "zero3" or "ddp"; None when not launched."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "zero3" if os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3" else "zero2"
    return "ddp" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None


def weights_sharded() -> bool:
    """Whether this process holds only a shard of the weights (FSDP, ZeRO-3): no whole-model generation, and the
    4-bit weights must be stored in the compute dtype."""
    return launched_strategy() in ("fsdp", "zero3")


def quant_storage_dtype() -> str | None:
    """bitsandbytes' bnb_4bit_quant_storage for this process: "bfloat16" when the weights are sharded (FSDP and
    ZeRO-3 can only shard floating-point tensors; PEFT's docs: the storage dtype matches the model's dtype),
    else None (bitsandbytes' default, uint8)."""
    return "bfloat16" if weights_sharded() else None


def data_job(kind: str, settings: Any, data_path: str | os.PathLike, eval_path: str | os.PathLike | None) -> dict[str, Any]:
    """The job fields of a pipeline that reads a data file and an optional eval file (SFT, DPO): every data
    problem is reported here, once, before any process starts (trainers/data.py load_train_eval)."""
    from rung.trainers import data

    data.load_train_eval(Path(data_path), Path(eval_path) if eval_path else None, kind, settings.eval_fraction,
                         settings.seed)
    return {"data": str(Path(data_path).resolve()), "eval_data": str(Path(eval_path).resolve()) if eval_path else None}


def run_data_job(train: Any, cls: type, job: dict[str, Any], resume: bool) -> dict[str, Any]:
    """One process of a launched SFT or DPO run: `train(settings, data, out_dir, eval_path=..., resume=...)`."""
    return train(job_settings(cls, job), job["data"], job["out_dir"], eval_path=job.get("eval_data"),
                 resume=bool(job.get("resume")) or resume)
