"""The device a training run gets (CUDA or CPU), the TrainingArguments that depend on it, and the memory check:
the estimator's figure against the free memory, with what to change when it will not fit."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from rung.advisor import estimator
from rung.core.errors import RungError
from rung.core.models import qlora_problem

Echo = Callable[[str], None]


@dataclasses.dataclass
class Device:
    kind: str               # "cuda" or "cpu"
    name: str
    free_gb: float
    total_gb: float
    count: int = 1
    bf16: bool = False


def detect_device() -> Device:
    import torch

    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        return Device("cuda", torch.cuda.get_device_name(0), free / 1e9, total / 1e9,
                      torch.cuda.device_count(), torch.cuda.is_bf16_supported())
    free = total = 0.0
    try:
        with open("/proc/meminfo") as handle:
            info = {line.split(":")[0]: int(line.split()[1]) for line in handle if ":" in line}
        free, total = info.get("MemAvailable", 0) / 1e6, info.get("MemTotal", 0) / 1e6
    except OSError:
        pass
    return Device("cpu", "CPU", free, total, 1, False)


def device_args(settings: Any, device: Device) -> dict[str, Any]:
    """TrainingArguments that depend on the device. TRL defaults bf16=True, which fails on CPU, and
    use_cpu=True alone trains ~5x slower (docs/development.md, "Measured on 2 cores"): on CPU pass both use_cpu=True and bf16=False."""
    if device.kind == "cpu":
        if settings.bf16:
            raise RungError("bf16 needs a GPU that supports it; on CPU leave bf16 unset (or --set bf16=false)")
        return {"use_cpu": True, "bf16": False, "fp16": False}
    bf16 = device.bf16 if settings.bf16 is None else settings.bf16
    return {"bf16": bool(bf16), "fp16": (not bf16) and settings.adapter == "qlora"}


def warn_learning_rate(settings: Any, echo: Echo, lora_floor: float = 1e-4, suggested: str = "1e-5") -> None:
    """Full fine-tuning at a LoRA learning rate wrecks a pretrained model quickly: say so, change nothing."""
    if settings.adapter == "full" and settings.learning_rate >= lora_floor:
        echo(f"Warning: learning_rate {settings.learning_rate:g} is a LoRA rate; full fine-tuning of a pretrained "
             f"model usually wants ~{suggested} (--learning-rate {suggested})")


def place_on_device(model, device: Device):
    """Put an unquantized model on the GPU before rung generates samples with it (the trainer keeps it there)."""
    if device.kind == "cuda" and not getattr(model, "is_loaded_in_4bit", False) and not hasattr(model, "hf_device_map"):
        model.to("cuda")
    return model


def check_qlora(settings: Any) -> None:
    """QLoRA is bitsandbytes 4-bit: CUDA only. One clear line on CPU, before anything heavy loads."""
    if settings.adapter != "qlora":
        return
    problem = qlora_problem()
    if problem:
        raise RungError(f"--{problem}: use --adapter lora on CPU" if "none" in problem else f"--{problem}")


# ---------------------------------------------------------------------------------------------- memory


def memory_check(model_path: str, settings: Any, *, method: str, tokens: int, seq_len: int, device: Device,
                 echo: Echo) -> dict[str, Any]:
    """Print the estimator's figure for this run and the device's free memory; stop with what to change if
    it will not fit. Returns what was printed, for metrics.json."""
    est_method = "dpo" if method == "dpo" else settings.adapter
    micro_batch = settings.per_device_train_batch_size
    checkpointing = bool(settings.gradient_checkpointing)
    advice: list[str] = []
    figure = estimator.estimate(base_model=model_path, tokens=tokens, gpu=None, gpus=max(1, device.count),
                                method=est_method, adapter=settings.adapter, seq_len=seq_len,
                                micro_batch=micro_batch, gradient_checkpointing=checkpointing)
    memory_gb = float(figure["memory_gb"])
    source = "rung.advisor.estimator"
    if device.free_gb and memory_gb > device.free_gb:
        shape = estimator.model_shape(model_path)
        advice = list(estimator.suggestions(shape, est_method, settings.adapter, device.free_gb,
                                            seq_len=seq_len, micro_batch=micro_batch,
                                            gradient_checkpointing=checkpointing, gpus=max(1, device.count)))
    where = f"{device.name}, {device.free_gb:.1f} GB free of {device.total_gb:.1f} GB" if device.total_gb else device.name
    echo(f"Memory: this run needs about {_gb(memory_gb)} ({source}; {est_method}, micro-batch {micro_batch} x "
         f"{seq_len} tokens); device: {where}")
    result = {"estimate_gb": round(memory_gb, 3), "free_gb": round(device.free_gb, 2), "device": device.name}
    if device.free_gb and memory_gb > device.free_gb:
        advice = (advice or suggestions(settings, device)) + sharding_suggestion(model_path, settings, method,
                                                                                 seq_len, device.free_gb)
        raise RungError([f"not enough memory: the estimate is {_gb(memory_gb)} but {device.name} has "
                         f"{device.free_gb:.1f} GB free. Change one of:"] + [f"  - {a}" for a in advice])
    return result


def suggestions(settings: Any, device: Device) -> list[str]:
    advice = []
    if settings.adapter == "full":
        advice.append("--adapter lora (trains ~1% of the weights; no optimizer state for the rest)")
    if settings.adapter != "qlora" and device.kind == "cuda":
        advice.append("--adapter qlora (4-bit base weights, ~4x less weight memory)")
    if settings.per_device_train_batch_size > 1:
        half = max(1, settings.per_device_train_batch_size // 2)
        accum = settings.gradient_accumulation_steps * settings.per_device_train_batch_size // half
        advice.append(f"--batch-size {half} --gradient-accumulation-steps {accum} "
                      "(same effective batch)")
    if not settings.gradient_checkpointing:
        advice.append("--gradient-checkpointing (recompute activations: ~30% slower, far less memory)")
    advice.append("--max-length lower (activations grow with sequence length)")
    advice.append("more GPUs (rung run --gpus N) or a GPU with more memory")
    return advice


def sharding_suggestion(model_path: str, settings: Any, method: str, seq_len: int, gpu_gb: float) -> list[str]:
    """For LoRA and QLoRA (the estimator already sizes full-weight sharding): the fewest GPUs over which FSDP's
    shards of the frozen base weights fit, through `--gpus N` (trainers/launch.py); with QLoRA, FSDP + QLoRA."""
    if settings.adapter == "full":
        return []
    from rung.trainers.launch import HEADROOM, memory_terms

    for gpus in (2, 4, 8):
        _, sharded = memory_terms(model_path, settings.adapter, method="dpo" if method == "dpo" else
                                  "cpt" if method == "cpt" else "sft", gpus=gpus, seq_len=seq_len,
                                  micro_batch=settings.per_device_train_batch_size,
                                  gradient_checkpointing=bool(settings.gradient_checkpointing))
        need = sum(sharded.values())
        if need <= gpu_gb * HEADROOM:
            what = "FSDP + QLoRA" if settings.adapter == "qlora" else "FSDP"
            return [f"--gpus {gpus} with --strategy fsdp ({what} shards the base weights): ~{_gb(need)} per GPU"]
    return []


def _gb(value: float) -> str:
    return f"{value:.2f} GB" if value >= 0.1 else f"{value * 1000:.0f} MB"

