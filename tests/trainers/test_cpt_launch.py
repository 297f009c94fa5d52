"""The accelerate launch: pure builders, configs parsed by accelerate itself, the injectable runner, the CLI."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from rung.core.errors import RungError
from rung.trainers.cpt import cpt_job
from rung.trainers.launch import accelerate_config, choose_strategy, launch, launch_command, write_config
from rung.core.settings import CPTSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "domain_corpus" / "corpus"


def test_launch_command_is_exact_for_two_nodes(tmp_path):
    cmd = launch_command(tmp_path / "accelerate_config.yaml", tmp_path / "cpt_job.json", num_processes=16,
                         num_machines=2, machine_rank=1, main_address="10.0.0.1", main_port=29501,
                         resume=True, accelerate=["accelerate"])
    assert cmd == ["accelerate", "launch", "--config_file", str(tmp_path / "accelerate_config.yaml"),
                   "--num_processes", "16", "--num_machines", "2", "--machine_rank", "1",
                   "--main_process_ip", "10.0.0.1", "--main_process_port", "29501",
                   "-m", "rung.trainers.worker", "--job", str(tmp_path / "cpt_job.json"), "--resume"]


def _accelerate_reads(config: dict, tmp_path: Path, **launch):
    """What accelerate's public entry points make of our files: the written config as its ClusterConfig (unknown
    keys raise) and the command as its launch parser reads it. The plugins built from them (they need CUDA) are
    checked under a real launch in tests/trainers/test_launch_gpu.py."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    path = write_config(config, tmp_path)
    loaded = load_config_from_file(str(path))
    assert isinstance(loaded, ClusterConfig)
    cmd = launch_command(path, tmp_path / "cpt_job.json", accelerate=["accelerate"], **launch)
    return loaded, launch_command_parser().parse_args(cmd[2:])


def test_fsdp_config_is_what_accelerate_builds_its_plugin_from(tmp_path):
    config = accelerate_config("fsdp", num_processes=16, num_machines=2, machine_rank=0, main_address="10.0.0.1",
                               activation_checkpointing=True)
    loaded, args = _accelerate_reads(config, tmp_path, num_processes=16, num_machines=2, machine_rank=0,
                                     main_address="10.0.0.1", main_port=29500)
    assert args.module and args.training_script == "rung.trainers.worker"
    assert (args.num_processes, args.num_machines, args.machine_rank) == (16, 2, 0)
    assert (args.main_process_ip, args.main_process_port) == ("10.0.0.1", 29500)
    assert loaded.distributed_type == "FSDP" and loaded.mixed_precision == "bf16"
    assert (loaded.num_processes, loaded.num_machines, loaded.rdzv_backend) == (16, 2, "static")
    fsdp = loaded.fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT" and fsdp["fsdp_activation_checkpointing"] is True
    assert fsdp["fsdp_cpu_ram_efficient_loading"] is True


def test_zero3_config_is_what_accelerate_builds_its_deepspeed_plugin_from(tmp_path):
    """DeepSpeed itself need not be installed: accelerate reads the config (the JSON it builds: the gpu test)."""
    config = accelerate_config("zero3", num_processes=8, gradient_accumulation_steps=4, max_grad_norm=0.5)
    loaded, _ = _accelerate_reads(config, tmp_path, num_processes=8)
    assert loaded.distributed_type == "DEEPSPEED" and not loaded.fsdp_config
    ds = loaded.deepspeed_config
    assert ds["zero_stage"] == 3 and ds["zero3_save_16bit_model"] is True
    assert ds["gradient_accumulation_steps"] == 4 and ds["gradient_clipping"] == 0.5
    assert ds["zero3_init_flag"] is True


def test_cpu_config_uses_the_multi_process_launcher(tmp_path):
    config = accelerate_config("ddp", num_processes=2, cpu=True)
    loaded, args = _accelerate_reads(config, tmp_path, num_processes=2)
    assert loaded.distributed_type == "MULTI_GPU" and loaded.use_cpu is True and loaded.mixed_precision == "no"
    assert args.num_processes == 2  # the real 2-process gloo run: tests/trainers/test_launch_train.py
    with pytest.raises(RungError, match="needs GPUs"):
        accelerate_config("fsdp", num_processes=2, cpu=True)
    with pytest.raises(RungError, match="--main-address"):
        accelerate_config("ddp", num_processes=16, num_machines=2)
    with pytest.raises(RungError, match='did you mean "zero3"'):
        accelerate_config("zero-3", num_processes=2)


def test_strategy_follows_the_memory_figure():
    # per-GPU GB: weights, gradients, optimizer (the estimator's terms)
    small = {"weights": 2, "gradients": 2, "optimizer": 4, "activations": 10, "logits": 2, "overhead": 1.5}
    assert choose_strategy(small, small, gpus=8, gpu_memory_gb=80, have_deepspeed=True)[0] == "ddp"
    mid = {"weights": 16, "gradients": 16, "optimizer": 32, "activations": 20, "logits": 4, "overhead": 1.5}
    mid_sharded = {**mid, "weights": 2, "gradients": 2, "optimizer": 4}
    assert choose_strategy(mid, mid_sharded, gpus=8, gpu_memory_gb=80, have_deepspeed=True)[0] == "zero2"
    strategy, why = choose_strategy(mid, mid_sharded, gpus=8, gpu_memory_gb=80, have_deepspeed=False)
    assert strategy == "fsdp" and "DeepSpeed is not installed" in why
    big = {"weights": 140, "gradients": 140, "optimizer": 280, "activations": 30, "logits": 4, "overhead": 1.5}
    big_sharded = {**big, "weights": 17.5, "gradients": 17.5, "optimizer": 35}
    assert choose_strategy(big, big_sharded, gpus=8, gpu_memory_gb=80, have_deepspeed=True)[0] == "fsdp"


def test_estimator_picks_sharding_for_a_70b_model():
    from rung.trainers.launch import estimate_strategy

    strategy, why = estimate_strategy("meta-llama/Llama-3.1-70B", "full", gpus=8, gpu_memory_gb=80, seq_len=2048,
                                      micro_batch=1, gradient_checkpointing=True)
    assert strategy == "fsdp" and "sharding weights" in why
    assert estimate_strategy("builtin:tiny", "full", gpus=8, gpu_memory_gb=80, seq_len=1024, micro_batch=4,
                             gradient_checkpointing=True)[0] == "ddp"
    # 8B full: fp32 master weights + AdamW = 16 bytes/param = 128 GB, so not plain DDP on 80 GB cards; LoRA is
    full_8b = estimate_strategy("meta-llama/Llama-3.1-8B", "full", gpus=8, gpu_memory_gb=80, seq_len=1024,
                                micro_batch=4, gradient_checkpointing=True)
    assert full_8b[0] in ("zero2", "fsdp") and "does not fit" in full_8b[1]
    assert estimate_strategy("meta-llama/Llama-3.1-8B", "lora", gpus=8, gpu_memory_gb=80, seq_len=1024,
                             micro_batch=4, gradient_checkpointing=True)[0] == "ddp"


def test_runner_is_injected_and_failure_is_one_line(tmp_path):
    calls = []

    def runner(cmd, env=None):
        calls.append((cmd, env))
        return 0

    settings = CPTSettings(max_length=64)
    result = launch("cpt", settings, tmp_path, job=cpt_job(settings, [EXAMPLE]), gpus=2, cpu=True, main_port=0,
                    runner=runner, echo=lambda line: None)
    assert calls[0][0] == result["command"] and calls[0][1]["CUDA_VISIBLE_DEVICES"] == ""
    assert yaml.safe_load((tmp_path / "accelerate_config.yaml").read_text())["num_processes"] == 2
    with pytest.raises(RungError, match="exited with code 3.*--resume"):
        launch("cpt", settings, tmp_path, job=cpt_job(settings, [EXAMPLE]), gpus=2, cpu=True,
               runner=lambda cmd, env=None: 3, echo=lambda line: None)


def test_dry_run_prints_command_and_config(rung, tmp_path):
    out = tmp_path / "run"
    result = rung("train", "cpt", "--corpus", EXAMPLE, "--out", out, "--gpus", "8", "--nodes", "2",
                  "--node-rank", "1", "--main-address", "10.0.0.1", "--strategy", "fsdp", "--dry-run")
    assert result.exit_code == 0, result.output
    command = next(line for line in result.output.splitlines() if line.startswith("Command: "))
    argv = shlex.split(command[len("Command: "):])
    assert argv[1:] == ["launch", "--config_file", str(out / "accelerate_config.yaml"), "--num_processes", "16",
                        "--num_machines", "2", "--machine_rank", "1", "--main_process_ip", "10.0.0.1",
                        "--main_process_port", "29500", "-m", "rung.trainers.worker", "--job", str(out / "cpt_job.json")]
    config = yaml.safe_load((out / "accelerate_config.yaml").read_text())
    assert config["distributed_type"] == "FSDP" and "distributed_type: FSDP" in result.output
    assert not (out / "checkpoints").exists()  # nothing trained


def test_cli_errors_are_one_line(rung, tmp_path):
    import torch

    result = rung("train", "cpt", "--corpus", tmp_path / "nope", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "corpus path does not exist" in result.output
    if not torch.cuda.is_available():
        result = rung("train", "cpt", "--corpus", EXAMPLE, "--out", tmp_path / "o", "--gpus", "2")
        assert result.exit_code == 2 and "no CUDA GPU; add --cpu" in result.output
    result = rung("train", "cpt", "--corpus", EXAMPLE, "--out", tmp_path / "o", "--set", "learnin_rate=1")
    assert result.exit_code == 2 and 'did you mean "learning_rate"' in result.output
