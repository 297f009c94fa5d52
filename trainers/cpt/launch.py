"""Starting a CPT run on many GPUs or nodes through `accelerate launch`: pure builders + an injectable runner.

rung never distributes anything itself. It writes an accelerate config (DDP, FSDP, or DeepSpeed ZeRO-2/3)
into the run folder, and runs

    accelerate launch --config_file RUN/accelerate_config.yaml --num_processes 16 --num_machines 2 \\
        --machine_rank 0 --main_process_ip 10.0.0.1 --main_process_port 29500 \\
        -m rung.trainers.cpt --job RUN/cpt_job.json

on each node (changing only --machine_rank). Every process then runs train_cpt (trainers/cpt/loop.py); the Trainer
reads the distributed setup accelerate prepared. The config and the job file stay in the run folder so the
same run can be started again by hand.

Strategy (overridable with --strategy), from the estimator's per-GPU memory figure (advisor.estimator):
- ddp:   the whole training state fits on one GPU (with 10% headroom): plain data parallel, the fastest.
- zero2: it does not, but weights + activations + (gradients + optimizer) / GPUs does: DeepSpeed ZeRO-2
         (needs `pip install deepspeed`; without it rung picks FSDP instead).
- zero3 / fsdp: otherwise, shard everything: FSDP full shard (native to torch) or ZeRO-3 when DeepSpeed is
         installed and asked for.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from rung.core.errors import RungError, did_you_mean
from rung.core.fileio import atomic_write_yaml

STRATEGIES = ("ddp", "fsdp", "zero2", "zero3")
CONFIG_FILE = "accelerate_config.yaml"
HEADROOM = 0.9  # plan to use at most 90% of a GPU's memory
DEFAULT_PORT = 29500

Runner = Callable[..., Any]


def deepspeed_available() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def choose_strategy(breakdown: dict[str, float], sharded: dict[str, float], *, gpus: int, gpu_memory_gb: float,
                    have_deepspeed: bool) -> tuple[str, str]:
    """(strategy, why) from the estimator's per-GPU memory terms: `breakdown` for one GPU holding everything,
    `sharded` for weights, gradients and optimizer split over all GPUs (estimator's gpus=N)."""
    whole = sum(breakdown.values())
    budget = gpu_memory_gb * HEADROOM
    if gpus <= 1 or whole <= budget:
        return "ddp", f"the training state ({whole:.1f} GB) fits on one {gpu_memory_gb:.0f} GB GPU: plain data parallel"
    states = breakdown.get("gradients", 0) + breakdown.get("optimizer", 0)
    zero2 = whole - states + states / gpus
    if zero2 <= budget:
        if have_deepspeed:
            return "zero2", (f"{whole:.1f} GB per GPU does not fit {gpu_memory_gb:.0f} GB; sharding gradients and "
                             f"optimizer state over {gpus} GPUs (ZeRO-2) brings it to {zero2:.1f} GB")
        return "fsdp", (f"{whole:.1f} GB per GPU does not fit {gpu_memory_gb:.0f} GB; ZeRO-2 would ({zero2:.1f} GB) "
                        "but DeepSpeed is not installed, so FSDP (native to torch) shards instead")
    full = sum(sharded.values())
    why = (f"even ZeRO-2 needs {zero2:.1f} GB per GPU; sharding weights too over {gpus} GPUs: {full:.1f} GB"
           + ("" if full <= budget else f" (still over {budget:.0f} GB: add GPUs, use LoRA, or shorten max_length)"))
    return "fsdp", why


def estimate_strategy(base_model: str, adapter: str, *, gpus: int, gpu_memory_gb: float, seq_len: int,
                      micro_batch: int, gradient_checkpointing: bool) -> tuple[str, str]:
    """choose_strategy with the estimator's figures for this model (config.json when it is a local folder)."""
    from rung.advisor import estimator

    shape = estimator.model_shape(base_model)
    kwargs = dict(seq_len=seq_len, micro_batch=micro_batch, gradient_checkpointing=gradient_checkpointing)
    one = estimator.memory_breakdown(shape, "cpt", adapter, gpus=1, **kwargs)
    many = estimator.memory_breakdown(shape, "cpt", adapter, gpus=gpus, **kwargs)
    if adapter == "full":
        # the estimator counts bf16 weights, gradients and AdamW states (8 bytes/param, TRL's default); rung's
        # CPT keeps fp32 master weights under bf16 autocast: 4 + 4 + 8 = 16 bytes/param (ZeRO paper, 3.1)
        for terms in (one, many):
            for key in ("weights", "gradients", "optimizer"):
                terms[key] = terms.get(key, 0.0) * 2
    return choose_strategy(one, many, gpus=gpus, gpu_memory_gb=gpu_memory_gb, have_deepspeed=deepspeed_available())


def accelerate_config(strategy: str, *, num_processes: int, num_machines: int = 1, machine_rank: int = 0,
                      main_address: str | None = None, main_port: int = DEFAULT_PORT, cpu: bool = False,
                      gradient_accumulation_steps: int = 1, max_grad_norm: float = 1.0,
                      activation_checkpointing: bool = False) -> dict[str, Any]:
    """The accelerate config (the same keys `accelerate config` writes) for one strategy."""
    if strategy not in STRATEGIES:
        raise RungError(f'strategy "{strategy}" is not one of {", ".join(STRATEGIES)}{did_you_mean(strategy, STRATEGIES)}')
    if num_machines > 1 and not main_address:
        raise RungError("several nodes need --main-address HOST (the address of the node with --node-rank 0)")
    if cpu and strategy != "ddp":
        raise RungError(f"--strategy {strategy} needs GPUs; on CPU only ddp (gloo) runs")
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": "MULTI_GPU",
        "downcast_bf16": "no",
        "machine_rank": machine_rank,
        "main_training_function": "main",
        "mixed_precision": "no" if cpu else "bf16",
        "num_machines": num_machines,
        "num_processes": num_processes,
        "rdzv_backend": "static",
        "same_network": True,
        "gpu_ids": "all",
        "use_cpu": cpu,
        "tpu_env": [],
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
    }
    if num_machines > 1:
        config["main_process_ip"] = main_address
        config["main_process_port"] = main_port
    if strategy == "fsdp":
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # wraps the model's _no_split_modules (decoder layers)
            "fsdp_reshard_after_forward": True,                 # full shard (ZeRO-3 equivalent)
            "fsdp_offload_params": False,
            "fsdp_state_dict_type": "FULL_STATE_DICT",          # save_pretrained writes ordinary safetensors
            "fsdp_cpu_ram_efficient_loading": True,             # rank 0 loads the weights, the others receive them
            "fsdp_sync_module_states": True,
            "fsdp_activation_checkpointing": activation_checkpointing,
        }
    elif strategy in ("zero2", "zero3"):
        config["distributed_type"] = "DEEPSPEED"
        ds: dict[str, Any] = {
            "zero_stage": 2 if strategy == "zero2" else 3,
            "gradient_accumulation_steps": gradient_accumulation_steps,
            "gradient_clipping": max_grad_norm,
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
        }
        if strategy == "zero3":
            ds["zero3_init_flag"] = True          # build the model already partitioned
            ds["zero3_save_16bit_model"] = True   # gather full weights when saving
        if num_machines > 1:
            ds["deepspeed_multinode_launcher"] = "standard"  # torchrun on each node: no pdsh, no hostfile
        config["deepspeed_config"] = ds
    return config


def write_config(config: dict[str, Any], run_dir: Path) -> Path:
    path = Path(run_dir) / CONFIG_FILE
    atomic_write_yaml(path, config)
    return path


def accelerate_executable() -> list[str]:
    """`accelerate` from this Python's environment (the venv may not be on PATH)."""
    script = Path(sys.executable).parent / "accelerate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "accelerate.commands.accelerate_cli"]


def launch_command(config_path: Path, job_path: Path, *, num_processes: int, num_machines: int = 1,
                   machine_rank: int = 0, main_address: str | None = None, main_port: int = DEFAULT_PORT,
                   resume: bool = False, accelerate: Sequence[str] | None = None) -> list[str]:
    """The exact `accelerate launch ...` argv. num_processes counts every process on every node."""
    cmd = list(accelerate or accelerate_executable()) + [
        "launch",
        "--config_file", str(config_path),
        "--num_processes", str(num_processes),
        "--num_machines", str(num_machines),
        "--machine_rank", str(machine_rank),
    ]
    if num_machines > 1 or main_address:
        cmd += ["--main_process_ip", str(main_address or "127.0.0.1")]
    cmd += ["--main_process_port", str(main_port)]
    cmd += ["-m", "rung.trainers.cpt", "--job", str(job_path)]
    if resume:
        cmd.append("--resume")
    return cmd


def subprocess_runner(cmd: list[str], **kwargs: Any) -> int:
    return subprocess.run(cmd, **kwargs).returncode


def launch_cpt(settings, corpus: Sequence[Path], out_dir: Path, *, gpus: int, nodes: int = 1, node_rank: int = 0,
               main_address: str | None = None, main_port: int = DEFAULT_PORT, strategy: str | None = None,
               cpu: bool = False, resume: bool = False, dry_run: bool = False, general_text: str | None = None,
               runner: Runner = subprocess_runner, echo: Callable[[str], None] = print,
               gpu_memory_gb: float | None = None) -> dict[str, Any]:
    """Write the job and the accelerate config into out_dir, then run (or with dry_run, print) the launch."""
    from rung.trainers.cpt.worker import write_job

    if gpus < 1 or nodes < 1 or not 0 <= node_rank < nodes:
        raise RungError(f"--gpus {gpus} --nodes {nodes} --node-rank {node_rank}: need gpus >= 1, nodes >= 1 and "
                        "0 <= node-rank < nodes")
    from rung.core.fileio import make_dir

    out_dir = Path(out_dir)
    make_dir(out_dir, what="output folder")
    total = gpus * nodes  # 8 GPUs per node × 2 nodes = 16 processes, one per GPU
    why = "set with --strategy"
    if strategy is None:
        if cpu:
            strategy, why = "ddp", "CPU processes (gloo): data parallel"
        else:
            memory = gpu_memory_gb if gpu_memory_gb is not None else _gpu_memory_gb()
            strategy, why = estimate_strategy(
                settings.model_name_or_path, "full" if settings.adapter == "full" else settings.adapter,
                gpus=total, gpu_memory_gb=memory, seq_len=settings.max_length,
                micro_batch=settings.per_device_train_batch_size,
                gradient_checkpointing=settings.gradient_checkpointing is not False)
    if strategy in ("zero2", "zero3") and not deepspeed_available() and not dry_run:
        raise RungError(f"--strategy {strategy} needs DeepSpeed: pip install deepspeed (or use --strategy fsdp)")
    config = accelerate_config(strategy, num_processes=total, num_machines=nodes, machine_rank=node_rank,
                               main_address=main_address, main_port=main_port, cpu=cpu,
                               gradient_accumulation_steps=settings.gradient_accumulation_steps,
                               max_grad_norm=settings.max_grad_norm,
                               activation_checkpointing=strategy == "fsdp" and settings.gradient_checkpointing is not False)
    config_path = write_config(config, out_dir)
    job_path = write_job(out_dir, settings, corpus, resume=resume, general_text=general_text)
    cmd = launch_command(config_path, job_path, num_processes=total, num_machines=nodes, machine_rank=node_rank,
                         main_address=main_address, main_port=main_port, resume=resume)
    echo(f"Strategy: {strategy} ({why})")
    echo(f"Accelerate config: {config_path}")
    echo("Command: " + shlex.join(cmd))
    result = {"strategy": strategy, "why": why, "config_path": str(config_path), "config": config,
              "job_path": str(job_path), "command": cmd}
    if dry_run:
        import yaml

        echo(yaml.safe_dump(config, sort_keys=False).rstrip())
        return result
    env = None
    if cpu:
        import os

        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    code = runner(cmd, env=env)
    if code != 0:
        raise RungError(f"accelerate launch exited with code {code}; the workers' errors are above. "
                        f"Rerun with --resume to continue from the last checkpoint in {out_dir / 'checkpoints'}")
    result["returncode"] = code
    return result


def _gpu_memory_gb() -> float:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / 1e9
    except ImportError:
        pass
    return 80.0  # planning from a machine without the GPUs (e.g. a login node): assume 80 GB cards
