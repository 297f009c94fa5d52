"""Starting a training run on many GPUs or nodes through `accelerate launch`: pure builders + an injectable runner.
Used by every pipeline (`rung train sft|dpo|cpt --gpus N`; `rung run --gpus N` through engines/training.py).

rung never distributes anything itself. It writes an accelerate config (DDP, FSDP, or DeepSpeed ZeRO-2/3) and a
job file (the resolved settings, the data, the output folder) into the run folder, and runs

    accelerate launch --config_file RUN/accelerate_config.yaml --num_processes 16 --num_machines 2 \\
        --machine_rank 0 --main_process_ip 10.0.0.1 --main_process_port 29500 \\
        -m rung.trainers.worker --job RUN/sft_job.json

on each node (changing only --machine_rank). Every process then runs the pipeline's entry function (train_sft,
train_dpo, train_cpt) on the job; the Trainer reads the distributed setup accelerate prepared. GRPO's workers
start `-m rung.engines.grpo` instead (its reward is resolved a layer above). The config and the job stay in the
run folder so the same run can be started again by hand.

Strategy (overridable with --strategy), from the estimator's per-GPU memory figure (advisor.estimator):
- ddp:   the whole training state fits on one GPU (with 10% headroom): plain data parallel, the fastest.
- zero2: it does not, but weights + activations + (gradients + optimizer) / GPUs does: DeepSpeed ZeRO-2
         (needs `pip install deepspeed`; without it rung picks FSDP instead).
- fsdp:  otherwise, shard everything: FSDP full shard (native to torch); ZeRO-3 when asked for.
         LoRA and QLoRA shard the frozen base weights too, so a 70B QLoRA run that does not fit one 24-48 GB
         card gets FSDP + QLoRA (the configuration below, from PEFT's and bitsandbytes' docs), with the
         parameters offloaded to CPU RAM when even 1/N of them does not fit.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from rung.core.errors import RungError, did_you_mean
from rung.core.fileio import atomic_write_yaml
from rung.trainers.jobs import PIPELINES, write_job

STRATEGIES = ("ddp", "fsdp", "zero2", "zero3")
CONFIG_FILE = "accelerate_config.yaml"
RUN_RECORD = "resolved_config.yaml"  # what marks a run folder as rung's (core/inputs.py RUN_MARKER); workers rewrite it
HEADROOM = 0.9  # plan to use at most 90% of a GPU's memory
DEFAULT_PORT = 29500
WORKER_MODULE = "rung.trainers.worker"   # `python -m rung.trainers.worker --job RUN/<pipeline>_job.json`

Runner = Callable[..., Any]
Echo = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- strategy


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
           + ("" if full <= budget else f" (still over {budget:.0f} GB: the parameters are offloaded to CPU RAM; "
                                        "more GPUs, QLoRA or a shorter max_length avoid that)"))
    return "fsdp", why


def memory_terms(base_model: str, adapter: str, *, method: str, gpus: int, seq_len: int, micro_batch: int,
                 gradient_checkpointing: bool) -> tuple[dict[str, float], dict[str, float]]:
    """The estimator's per-GPU terms for one GPU holding everything, and for everything sharded over `gpus`.

    method: "sft", "dpo" or "cpt". The estimator shards only full-weight states; FSDP and ZeRO-3 shard a LoRA or
    QLoRA run's frozen base weights (and DPO's reference copy) as well, so those are divided here."""
    from rung.advisor import estimator

    shape = estimator.model_shape(base_model)
    est_method = adapter if method in ("sft", "grpo") else method
    kwargs = dict(seq_len=seq_len, micro_batch=micro_batch, gradient_checkpointing=gradient_checkpointing)
    one = estimator.memory_breakdown(shape, est_method, adapter, gpus=1, **kwargs)
    many = estimator.memory_breakdown(shape, est_method, adapter, gpus=gpus, **kwargs)
    if adapter != "full":
        for key in ("weights", "reference_model"):
            many[key] = one.get(key, 0.0) / max(1, gpus)
    if method == "cpt" and adapter == "full":
        # the estimator counts bf16 weights, gradients and AdamW states (8 bytes/param, TRL's default); rung's
        # CPT keeps fp32 master weights under bf16 autocast: 4 + 4 + 8 = 16 bytes/param (ZeRO paper, 3.1)
        for terms in (one, many):
            for key in ("weights", "gradients", "optimizer"):
                terms[key] = terms.get(key, 0.0) * 2
    return one, many


def estimate_strategy(base_model: str, adapter: str, *, gpus: int, gpu_memory_gb: float, seq_len: int,
                      micro_batch: int, gradient_checkpointing: bool, method: str = "cpt") -> tuple[str, str]:
    """choose_strategy with the estimator's figures for this model (config.json when it is a local folder)."""
    one, many = memory_terms(base_model, adapter, method=method, gpus=gpus, seq_len=seq_len,
                             micro_batch=micro_batch, gradient_checkpointing=gradient_checkpointing)
    return choose_strategy(one, many, gpus=gpus, gpu_memory_gb=gpu_memory_gb, have_deepspeed=deepspeed_available())


# ---------------------------------------------------------------------------------------------- config


def accelerate_config(strategy: str, *, num_processes: int, num_machines: int = 1, machine_rank: int = 0,
                      main_address: str | None = None, main_port: int = DEFAULT_PORT, cpu: bool = False,
                      gradient_accumulation_steps: int = 1, max_grad_norm: float = 1.0,
                      activation_checkpointing: bool = False, qlora: bool = False,
                      offload_params: bool = False) -> dict[str, Any]:
    """The accelerate config (the same keys `accelerate config` writes) for one strategy.

    qlora: the base model is bitsandbytes 4-bit (FSDP + QLoRA, see below); offload_params: FSDP keeps the
    parameter shards in CPU RAM between uses (slower; for a model whose shards alone do not fit)."""
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
        config["fsdp_config"] = (_fsdp_qlora_config(offload_params) if qlora
                                 else _fsdp_config(offload_params, activation_checkpointing))
    elif strategy in ("zero2", "zero3"):
        config["distributed_type"] = "DEEPSPEED"
        config["deepspeed_config"] = _deepspeed_config(strategy, gradient_accumulation_steps, max_grad_norm,
                                                       num_machines)
    return config


def _fsdp_qlora_config(offload_params: bool) -> dict[str, Any]:
    """FSDP + QLoRA, as PEFT documents it ("Use PEFT QLoRA and FSDP for finetuning large models on multiple
    GPUs", huggingface.co/docs/peft/accelerate/fsdp, peft v0.21.2 docs/source/accelerate/fsdp.md) and
    bitsandbytes (huggingface.co/docs/bitsandbytes/fsdp_qlora):
    - FSDP1: FSDP2's fully_shard turns Params4bit into plain tensors and loses the quantization state;
      accelerate leaves such weights unsharded (accelerate PR #3987, merged: it excludes them from fully_shard;
      tests/trainers/test_launch_gpu.py checks the FSDP1 plugin this builds under a real launch) and FSDP2 QLoRA
      is an open feature request (accelerate #3874), so the documented FSDP1 path is the one that shards 4-bit weights;
    - use_orig_params false (PEFT: needed "to realize GPU memory savings"; the Trainer then wraps the LoRA
      layers apart from the frozen ones with peft's fsdp_auto_wrap_policy, transformers update_fsdp_plugin_peft);
    - cpu_ram_efficient_loading + sync_module_states: rank 0 reads the weights, the others receive them;
    - the 4-bit weights must be stored in the compute dtype (bnb_4bit_quant_storage=bfloat16, the model
      loaded in bfloat16) so FSDP can flatten them with the rest: the worker loads them that way
      (trainers/jobs.py quant_storage_dtype, core/models.py);
    - SHARDED_STATE_DICT checkpoints (no 35 GB gather per save); the final adapter is saved after switching
      to FULL_STATE_DICT (trainers/common.py save_full_state), as PEFT's examples/sft/train.py does."""
    return {
        "fsdp_version": 1,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_reshard_after_forward": "FULL_SHARD",
        "fsdp_backward_prefetch": "BACKWARD_PRE",
        "fsdp_forward_prefetch": False,
        "fsdp_offload_params": offload_params,  # PEFT's 2 x 24 GB example offloads: 19.6 GB/GPU, 35.6 without
        "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        "fsdp_cpu_ram_efficient_loading": True,
        "fsdp_sync_module_states": True,
        "fsdp_use_orig_params": False,
        "fsdp_activation_checkpointing": False,  # the Trainer's gradient_checkpointing does it (PEFT's recipe)
    }


def _fsdp_config(offload_params: bool, activation_checkpointing: bool) -> dict[str, Any]:
    return {
        "fsdp_version": 2,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # wraps the model's _no_split_modules (decoder layers)
        "fsdp_reshard_after_forward": True,                 # full shard (ZeRO-3 equivalent)
        "fsdp_offload_params": offload_params,
        "fsdp_state_dict_type": "FULL_STATE_DICT",          # save_pretrained writes ordinary safetensors
        "fsdp_cpu_ram_efficient_loading": True,             # rank 0 loads the weights, the others receive them
        "fsdp_sync_module_states": True,
        "fsdp_activation_checkpointing": activation_checkpointing,
    }


def _deepspeed_config(strategy: str, gradient_accumulation_steps: int, max_grad_norm: float,
                      num_machines: int) -> dict[str, Any]:
    ds: dict[str, Any] = {
        "zero_stage": 2 if strategy == "zero2" else 3,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "gradient_clipping": max_grad_norm,
        "offload_optimizer_device": "none",
        "offload_param_device": "none",
    }
    if strategy == "zero3":
        # build the model already partitioned (transformers turns zero.Init off itself for a 4-bit model,
        # transformers PR #29587 "Add support for FSDP+QLoRA and DeepSpeed ZeRO3+QLoRA")
        ds["zero3_init_flag"] = True
        ds["zero3_save_16bit_model"] = True   # gather full weights when saving
    if num_machines > 1:
        ds["deepspeed_multinode_launcher"] = "standard"  # torchrun on each node: no pdsh, no hostfile
    return ds


def write_config(config: dict[str, Any], run_dir: Path) -> Path:
    path = Path(run_dir) / CONFIG_FILE
    atomic_write_yaml(path, config)
    return path


def accelerate_executable() -> list[str]:
    """`accelerate` from this Python's environment (the venv may not be on PATH)."""
    script = Path(sys.executable).parent / "accelerate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "accelerate.commands.accelerate_cli"]


def launch_command(config_path: Path, job_path: Path, *, module: str = WORKER_MODULE, num_processes: int,
                   num_machines: int = 1, machine_rank: int = 0, main_address: str | None = None,
                   main_port: int = DEFAULT_PORT, resume: bool = False,
                   accelerate: Sequence[str] | None = None) -> list[str]:
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
    cmd += ["-m", module, "--job", str(job_path)]
    if resume:
        cmd.append("--resume")
    return cmd


def subprocess_runner(cmd: list[str], **kwargs: Any) -> int:
    return subprocess.run(cmd, **kwargs).returncode


# ---------------------------------------------------------------------------------------------- checks


def cluster_problems(*, gpus: int, nodes: int, node_rank: int, main_address: str | None, main_port: int | None,
                     strategy: str | None, cpu: bool, adapter: str | None = None) -> list[str]:
    """Every problem with the cluster flags, one line each, before anything is written (exit 2)."""
    problems = []
    if gpus < 1 or nodes < 1:
        problems.append(f"--gpus {gpus} --nodes {nodes}: both must be 1 or more")
    if not 0 <= node_rank < max(nodes, 1):
        problems.append(f"--node-rank {node_rank}: must be between 0 and {max(nodes, 1) - 1} for --nodes {nodes}")
    if nodes > 1 and not main_address:
        problems.append(f"--nodes {nodes} needs --main-address HOST (the address of the node with --node-rank 0)")
    if nodes > 1 and main_port == 0:
        problems.append("--main-port 0 (any free port) works on one node only; give the same port on every node")
    if strategy is not None and strategy not in STRATEGIES:
        problems.append(f'--strategy {strategy}: not one of {", ".join(STRATEGIES)}'
                        f'{did_you_mean(strategy, STRATEGIES)}')
    elif cpu and strategy not in (None, "ddp"):
        problems.append(f"--strategy {strategy} needs GPUs; with --cpu only ddp (gloo) runs")
    if cpu and adapter == "qlora":
        problems.append("--cpu with --adapter qlora: 4-bit weights (bitsandbytes) need CUDA; use --adapter lora")
    return problems


# ---------------------------------------------------------------------------------------------- launch


def launch(pipeline: str, settings: Any, out_dir: Path, *, job: dict[str, Any], gpus: int, nodes: int = 1,
           node_rank: int = 0, main_address: str | None = None, main_port: int = DEFAULT_PORT,
           strategy: str | None = None, cpu: bool = False, resume: bool = False, dry_run: bool = False,
           runner: Runner | None = None, echo: Echo = print, gpu_memory_gb: float | None = None,
           module: str = WORKER_MODULE) -> dict[str, Any]:
    """Write the job and the accelerate config into out_dir, then run (or with dry_run, print) the launch.

    job: the pipeline's own fields (data paths, corpus, ...) written beside the settings (trainers/jobs.py).
    Returns what was decided and run."""
    adapter = getattr(settings, "adapter", "full")
    problems = cluster_problems(gpus=gpus, nodes=nodes, node_rank=node_rank, main_address=main_address,
                                main_port=main_port, strategy=strategy, cpu=cpu, adapter=adapter)
    if problems:
        raise RungError(problems)
    from rung.core.fileio import make_dir

    out_dir = Path(out_dir)
    total = gpus * nodes  # 8 GPUs per node × 2 nodes = 16 processes, one per GPU
    strategy, why, checkpointing, terms, memory = _decide(pipeline, settings, strategy, cpu=cpu, total=total,
                                                          gpu_memory_gb=gpu_memory_gb)
    offload = False
    if strategy == "fsdp" and terms is not None:
        offload = sum(terms[1].values()) > memory * HEADROOM  # even 1/N of the state does not fit: CPU RAM holds it
    if strategy in ("zero2", "zero3") and not deepspeed_available() and not dry_run:
        raise RungError(f"--strategy {strategy} needs DeepSpeed: pip install deepspeed (or use --strategy fsdp)")
    qlora = adapter == "qlora"
    config = accelerate_config(strategy, num_processes=total, num_machines=nodes, machine_rank=node_rank,
                               main_address=main_address, main_port=main_port, cpu=cpu,
                               gradient_accumulation_steps=settings.gradient_accumulation_steps,
                               max_grad_norm=settings.max_grad_norm, qlora=qlora, offload_params=offload,
                               activation_checkpointing=strategy == "fsdp" and checkpointing and not qlora)
    make_dir(out_dir, what="output folder")
    if not (out_dir / RUN_RECORD).exists():  # the run's settings, before any worker writes its own (rung's folder)
        import dataclasses

        atomic_write_yaml(out_dir / RUN_RECORD, {"pipeline": pipeline, **job, "launched": True,
                                                 "settings": dataclasses.asdict(settings)})
    config_path = write_config(config, out_dir)
    job_path = write_job(out_dir, pipeline, settings, resume=resume, strategy=strategy, **job)
    cmd = launch_command(config_path, job_path, module=module, num_processes=total, num_machines=nodes,
                         machine_rank=node_rank, main_address=main_address, main_port=main_port, resume=resume)
    _say(echo, strategy, why, qlora=qlora, offload=offload, terms=terms, memory=memory)
    echo(f"Accelerate config: {config_path}")
    echo("Command: " + shlex.join(cmd))
    result = {"strategy": strategy, "why": why, "config_path": str(config_path), "config": config,
              "job_path": str(job_path), "command": cmd, "offload_params": offload}
    if dry_run:
        import yaml

        echo(yaml.safe_dump(config, sort_keys=False).rstrip())
        return result
    result["returncode"] = _run(cmd, cpu=cpu, runner=runner, out_dir=out_dir)
    return result


def _say(echo: Echo, strategy: str, why: str, *, qlora: bool, offload: bool, terms: Any,
         memory: float | None) -> None:
    """The strategy and why, and the warning when a 4-bit model cannot even be loaded whole before sharding."""
    echo(f"Strategy: {strategy} ({why})"
         + ("; FSDP + QLoRA: FSDP1, 4-bit weights stored as bfloat16" if strategy == "fsdp" and qlora else "")
         + ("; parameters offloaded to CPU RAM" if offload else ""))
    if strategy == "fsdp" and qlora and terms is not None and terms[0].get("weights", 0) > memory * HEADROOM:
        # transformers 5.24 loads a bitsandbytes model whole on every rank (its FSDP rank-0-only loading skips
        # quantized models); FSDP shards it afterwards. Read in its loading code, not measured on GPUs.
        echo(f"Warning: each process first loads the whole 4-bit model ({terms[0]['weights']:.1f} GB) onto its GPU "
             f"before FSDP shards it; that does not fit {memory:.0f} GB. Use GPUs with more memory.")


def _decide(pipeline: str, settings: Any, strategy: str | None, *, cpu: bool, total: int,
            gpu_memory_gb: float | None) -> tuple[str, str, bool, Any, float | None]:
    """(strategy, why, gradient checkpointing, the estimator's memory terms or None on CPU, GB per GPU)."""
    adapter = getattr(settings, "adapter", "full")
    why = "set with --strategy"
    memory = gpu_memory_gb if gpu_memory_gb is not None else (None if cpu else _gpu_memory_gb())
    checkpointing = getattr(settings, "gradient_checkpointing", None) is not False
    if pipeline != "cpt":
        checkpointing = bool(getattr(settings, "gradient_checkpointing", False))
    terms = None
    if not cpu:
        terms = memory_terms(_base_model(settings.model_name_or_path), adapter, method=pipeline, gpus=total,
                             seq_len=getattr(settings, "max_length", None) or 1024,  # GRPO has no max_length
                             micro_batch=settings.per_device_train_batch_size, gradient_checkpointing=checkpointing)
    if strategy is None:
        if cpu:
            strategy, why = "ddp", "CPU processes (gloo): data parallel"
        else:
            strategy, why = choose_strategy(*terms, gpus=total, gpu_memory_gb=memory,
                                            have_deepspeed=deepspeed_available())
    return strategy, why, checkpointing, terms, memory


def _run(cmd: list[str], *, cpu: bool, runner: Runner | None, out_dir: Path) -> int:
    """Run the launch (CPU: no GPU visible, one thread per process unless OMP_NUM_THREADS says otherwise)."""
    env = None
    if cpu:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    code = (runner or subprocess_runner)(cmd, env=env)
    if code != 0:
        raise RungError(f"accelerate launch exited with code {code}; the workers' errors are above. "
                        f"Rerun with --resume to continue from the last checkpoint in {out_dir / 'checkpoints'}")
    return code


def _base_model(spec: str) -> str:
    """The model whose shape sizes the run: an adapter folder's base (DPO from an SFT output), else spec itself."""
    from rung.core.models import adapter_base, is_adapter_dir

    return adapter_base(Path(spec)) if is_adapter_dir(spec) else spec


def _gpu_memory_gb() -> float:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / 1e9
    except ImportError:
        pass
    return 80.0  # planning from a machine without the GPUs (e.g. a login node): assume 80 GB cards


__all__ = ["CONFIG_FILE", "DEFAULT_PORT", "HEADROOM", "PIPELINES", "RUN_RECORD", "STRATEGIES", "WORKER_MODULE",
           "accelerate_config", "accelerate_executable", "choose_strategy", "cluster_problems", "deepspeed_available",
           "estimate_strategy", "launch", "launch_command", "memory_terms", "subprocess_runner", "write_config"]
