"""Starting a CPT run on many GPUs or nodes: the shared launcher (trainers/launch.py) with CPT's job and entry.

    accelerate launch --config_file RUN/accelerate_config.yaml --num_processes 16 --num_machines 2 \\
        --machine_rank 0 --main_process_ip 10.0.0.1 --main_process_port 29500 \\
        -m rung.trainers.cpt --job RUN/cpt_job.json

The strategy choice, the accelerate config, the command and the runner are the ones SFT and DPO use; CPT adds
its corpus to the job, keeps its own worker entry (`python -m rung.trainers.cpt`), and sizes full-weight memory
with fp32 master weights (trainers/launch.py memory_terms).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from rung.trainers import launch as shared
from rung.trainers.launch import (CONFIG_FILE, DEFAULT_PORT, HEADROOM, STRATEGIES, Runner, accelerate_config,
                                  accelerate_executable, choose_strategy, deepspeed_available, subprocess_runner,
                                  write_config)

CPT_MODULE = "rung.trainers.cpt"  # `python -m rung.trainers.cpt --job cpt_job.json`


def estimate_strategy(base_model: str, adapter: str, *, gpus: int, gpu_memory_gb: float, seq_len: int,
                      micro_batch: int, gradient_checkpointing: bool) -> tuple[str, str]:
    """The shared strategy choice with CPT's memory figures."""
    return shared.estimate_strategy(base_model, adapter, method="cpt", gpus=gpus, gpu_memory_gb=gpu_memory_gb,
                                    seq_len=seq_len, micro_batch=micro_batch,
                                    gradient_checkpointing=gradient_checkpointing)


def launch_command(config_path: Path, job_path: Path, **kwargs: Any) -> list[str]:
    """The exact `accelerate launch ... -m rung.trainers.cpt --job ...` argv."""
    return shared.launch_command(config_path, job_path, module=CPT_MODULE, **kwargs)


def launch_cpt(settings, corpus: Sequence[Path], out_dir: Path, *, gpus: int, nodes: int = 1, node_rank: int = 0,
               main_address: str | None = None, main_port: int = DEFAULT_PORT, strategy: str | None = None,
               cpu: bool = False, resume: bool = False, dry_run: bool = False, general_text: str | None = None,
               runner: Runner | None = None, echo: Callable[[str], None] = print,
               gpu_memory_gb: float | None = None) -> dict[str, Any]:
    """Write cpt_job.json and the accelerate config into out_dir, then run (or with dry_run, print) the launch."""
    return shared.launch("cpt", settings, out_dir,
                         job={"corpus": [str(Path(c).resolve()) for c in corpus],
                              "general_text": str(general_text) if general_text else None},
                         gpus=gpus, nodes=nodes, node_rank=node_rank, main_address=main_address,
                         main_port=main_port, strategy=strategy, cpu=cpu, resume=resume, dry_run=dry_run,
                         runner=runner, echo=echo, gpu_memory_gb=gpu_memory_gb, module=CPT_MODULE)


__all__ = ["CONFIG_FILE", "CPT_MODULE", "DEFAULT_PORT", "HEADROOM", "STRATEGIES", "accelerate_config",
           "accelerate_executable", "choose_strategy", "deepspeed_available", "estimate_strategy", "launch_command",
           "launch_cpt", "subprocess_runner", "write_config"]
