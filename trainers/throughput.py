"""Tokens per second and MFU (model FLOPs utilisation), logged during a run.

MFU = achieved model FLOP/s ÷ (peak dense BF16 FLOP/s × GPUs). Model FLOPs per token come from the estimator
(advisor.estimator.flops_per_token: 6N for full training, ~4N + adapter for LoRA, N counting the LM head),
without gradient checkpointing's recomputation (that is hardware FLOPs, not model FLOPs: PaLM's definition).
The peak comes from advisor/gpus.yaml through advisor.estimator.gpu_spec, matched from
torch.cuda.get_device_name(). On CPU, or on a GPU the table does not know, MFU is reported as n/a with why.

Arithmetic: 1B parameters full → 6e9 FLOPs/token; at 60,000 tokens/s that is 3.6e14 FLOP/s, 36% of an H100/H200's
989.5 TFLOPS.
"""

from __future__ import annotations

import re
import time
from typing import Any


def gpu_peak_tflops(device_name: str) -> tuple[float | None, str]:
    """(peak dense bf16 TFLOPS, table name) for a CUDA device name like "NVIDIA H100 80GB HBM3"; (None, why)."""
    from rung.core.errors import RungError
    from rung.advisor.estimator import gpu_spec

    name = re.sub(r"^(nvidia|amd)\s+", "", device_name.strip(), flags=re.I)
    words = [w for w in re.split(r"[\s\-_]+", name) if w]
    candidates = [name] + [" ".join(words[:n]) for n in range(len(words), 0, -1)]
    for candidate in candidates:
        try:
            spec = gpu_spec(candidate)
            return spec["peak_bf16_tflops"], spec["name"]
        except RungError:
            continue
    return None, f'GPU "{device_name}" is not in advisor/gpus.yaml'


def model_flops_per_token(model, adapter: str) -> float:
    """The estimator's training FLOPs per token for this model (parameters counted from the live model)."""
    from rung.advisor.estimator import ModelShape, flops_per_token

    from rung.advisor.estimator import params_from_config

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    if getattr(base, "is_loaded_in_4bit", False):  # packed 4-bit tensors under-count: use the config's shape
        n_params = params_from_config(config.to_dict()) * 1e9
    else:
        n_params = sum(p.numel() for name, p in base.named_parameters()
                       if "lora_" not in name and "modules_to_save" not in name)
    shape = ModelShape(n_params / 1e9, int(getattr(config, "num_hidden_layers", 1)),
                       int(getattr(config, "hidden_size", 1)), int(getattr(config, "vocab_size", 1)), "model")
    kind = "full" if adapter == "full" else "lora"
    return flops_per_token(shape, "cpt", kind, gradient_checkpointing=False)


def device_peak() -> tuple[float | None, str]:
    import torch

    if not torch.cuda.is_available():
        return None, "CPU run: no GPU peak to compare with"
    return gpu_peak_tflops(torch.cuda.get_device_name(0))


def _callback_class():
    from transformers import TrainerCallback

    class ThroughputCallback(TrainerCallback):
        """Adds tokens_per_second and mfu to each logged record (and prints them on the main process)."""

        def __init__(self, *, tokens_per_step: int, model, adapter: str = "full", world_size: int = 1):
            self.tokens_per_step = tokens_per_step
            self.world_size = world_size
            self.flops_per_token = model_flops_per_token(model, adapter)
            self.peak_tflops, self.peak_note = device_peak()
            self.intervals: list[tuple[int, float]] = []  # (steps, seconds) between logs
            self._mark: tuple[int, float] | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self._mark = (state.global_step, time.perf_counter())

        def mfu(self, tokens_per_second: float) -> float | None:
            if not self.peak_tflops:
                return None
            return tokens_per_second * self.flops_per_token / (self.peak_tflops * 1e12 * self.world_size)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self._mark is None or logs is None or "loss" not in logs:
                return
            step, now = state.global_step, time.perf_counter()
            steps, seconds = step - self._mark[0], now - self._mark[1]
            self._mark = (step, now)
            if steps <= 0 or seconds <= 0:
                return
            self.intervals.append((steps, seconds))
            rate = steps * self.tokens_per_step / seconds
            record = {"tokens_per_second": round(rate, 1)}
            mfu = self.mfu(rate)
            if mfu is not None:
                record["mfu"] = round(mfu, 4)
            if state.log_history and state.log_history[-1].get("step") == step:
                state.log_history[-1].update(record)
            if state.is_world_process_zero:
                print(f"rung cpt: step {step}/{state.max_steps} loss {logs['loss']:.4f} "
                      f"{rate:,.0f} tokens/s" + (f", MFU {mfu:.1%}" if mfu is not None else ""), flush=True)

        def on_evaluate(self, args, state, control, **kwargs):
            if self._mark is not None:  # evaluation and checkpoint time are not training throughput
                self._mark = (state.global_step, time.perf_counter())

        on_save = on_evaluate

        def summary(self) -> dict[str, Any]:
            """Steady-state figures: the first logging interval (warm-up, compilation) is left out when
            there are others."""
            intervals = self.intervals[1:] if len(self.intervals) > 1 else self.intervals
            steps = sum(s for s, _ in intervals)
            seconds = sum(t for _, t in intervals)
            rate = steps * self.tokens_per_step / seconds if seconds else 0.0
            mfu = self.mfu(rate) if rate else None
            out: dict[str, Any] = {"tokens_per_second": round(rate, 1), "flops_per_token": self.flops_per_token,
                                   "peak_bf16_tflops": self.peak_tflops, "mfu": round(mfu, 4) if mfu else None}
            if mfu is None:
                out["mfu_note"] = self.peak_note
            return out

    return ThroughputCallback


def ThroughputCallback(**kwargs):  # noqa: N802 - a class made on first use (transformers imported late)
    return _callback_class()(**kwargs)
