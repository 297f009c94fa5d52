"""SFT and DPO through the shared launcher (trainers/launch.py), without training: the configs parsed by accelerate
itself, the FSDP + QLoRA configuration the estimator picks for a 70B model, the exact --dry-run command, one-line
errors for bad cluster flags, the worker's job files, and `rung run --gpus N` handing sft/dpo steps to the launcher."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rung.core.errors import RungError
from rung.core.settings import DPOSettings, SFTSettings
from rung.trainers import jobs, launch

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SFT_DATA = EXAMPLES / "sql_assistant" / "data" / "train.jsonl"
PAIRS = EXAMPLES / "preferences" / "data" / "pairs.jsonl"


def accelerate_reads(config_path: Path, command: list[str]):
    """What accelerate's public entry points make of our files: the config file as its ClusterConfig (unknown keys
    raise) and the command as its launch parser reads it. Building the plugins from them needs CUDA (FSDP1 syncs
    module states on the current device): tests/trainers/test_launch_gpu.py does that under a real launch."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(config_path))
    assert isinstance(config, ClusterConfig)
    args = launch_command_parser().parse_args(command[1:] if command[0] == "launch" else command[2:])
    return config, args


def _dry(pipeline: str, settings, out: Path, **kwargs):
    job = {"data": str(SFT_DATA if pipeline == "sft" else PAIRS), "eval_data": None}
    return launch.launch(pipeline, settings, out, job=job, dry_run=True, echo=lambda line: None,
                         **{"gpus": 4, **kwargs})


def test_sft_fsdp_config_for_lora_parses_with_accelerate(tmp_path):
    result = _dry("sft", SFTSettings(adapter="lora", gradient_checkpointing=True), tmp_path, strategy="fsdp",
                  gpu_memory_gb=80)
    config, args = accelerate_reads(Path(result["config_path"]), result["command"])
    assert args.module and args.training_script == "rung.trainers.worker"
    assert args.training_script_args == ["--job", str(tmp_path / "sft_job.json")]
    assert config.distributed_type == "FSDP" and config.num_processes == 4 and config.mixed_precision == "bf16"
    fsdp = config.fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_activation_checkpointing"] is True  # FSDP's own, and the worker turns the Trainer's off
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT" and fsdp["fsdp_cpu_ram_efficient_loading"] is True


def test_sft_fsdp_qlora_config_is_the_documented_one(tmp_path):
    """PEFT's FSDP + QLoRA recipe: FSDP1, use_orig_params false, cpu_ram_efficient_loading, sync_module_states,
    sharded checkpoints; the worker stores the 4-bit weights as bfloat16."""
    result = _dry("sft", SFTSettings(adapter="qlora", gradient_checkpointing=True), tmp_path, strategy="fsdp",
                  gpu_memory_gb=80)
    config, _ = accelerate_reads(Path(result["config_path"]), result["command"])
    fsdp = config.fsdp_config
    assert config.distributed_type == "FSDP" and fsdp["fsdp_version"] == 1
    assert fsdp["fsdp_use_orig_params"] is False and fsdp["fsdp_cpu_ram_efficient_loading"] is True
    assert fsdp["fsdp_sync_module_states"] is True
    assert fsdp["fsdp_reshard_after_forward"] == "FULL_SHARD" and fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    assert fsdp["fsdp_activation_checkpointing"] is False  # gradient checkpointing stays the Trainer's (PEFT's recipe)
    assert fsdp["fsdp_offload_params"] is False  # a tiny model fits: no offload
    assert config.mixed_precision == "bf16"


def test_sft_zero3_config_parses_with_accelerate(tmp_path):
    """DeepSpeed itself need not be installed: accelerate reads the config (the JSON it builds: the gpu test)."""
    settings = SFTSettings(gradient_accumulation_steps=4, max_grad_norm=0.5)
    result = _dry("sft", settings, tmp_path, gpus=8, strategy="zero3")
    config, args = accelerate_reads(Path(result["config_path"]), result["command"])
    assert config.distributed_type == "DEEPSPEED" and args.training_script == "rung.trainers.worker"
    ds = config.deepspeed_config
    assert ds["zero_stage"] == 3 and ds["zero3_init_flag"] is True and ds["zero3_save_16bit_model"] is True
    assert ds["gradient_accumulation_steps"] == 4 and ds["gradient_clipping"] == 0.5


def test_estimator_recommends_fsdp_qlora_for_a_70b_model():
    """70B QLoRA (~48 GB with checkpointing at 2,048 tokens): DDP on 80 GB cards, FSDP + QLoRA on 48 GB cards,
    and FSDP + QLoRA with CPU offload on 24 GB cards, with a warning about the whole-model load."""
    settings = SFTSettings(model_name_or_path="meta-llama/Llama-3.1-70B", adapter="qlora", max_length=2048,
                           per_device_train_batch_size=1, gradient_checkpointing=True)
    lines: list[str] = []

    def plan(gpus: int, memory: float, tmp: Path):
        lines.clear()
        return launch.launch("sft", settings, tmp, job={}, gpus=gpus, gpu_memory_gb=memory, dry_run=True,
                             echo=lines.append)

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        assert plan(8, 80, Path(tmp) / "a")["strategy"] == "ddp"
        on_48 = plan(4, 48, Path(tmp) / "b")
        assert on_48["strategy"] == "fsdp" and on_48["config"]["fsdp_config"]["fsdp_version"] == 1
        assert not on_48["offload_params"] and "FSDP + QLoRA" in lines[0]
        on_24 = plan(2, 24, Path(tmp) / "c")
        assert on_24["strategy"] == "fsdp" and on_24["config"]["fsdp_config"]["fsdp_offload_params"] is True
        assert any(line.startswith("Warning: each process first loads the whole 4-bit model") for line in lines)


def test_sharding_is_what_the_memory_check_suggests_for_qlora():
    from rung.trainers.device import Device, memory_check

    settings = SFTSettings(adapter="qlora", per_device_train_batch_size=1, gradient_checkpointing=True,
                           max_length=2048)
    device = Device("cuda", "NVIDIA L40S", free_gb=44.0, total_gb=48.0, count=1, bf16=True)
    with pytest.raises(RungError) as error:
        memory_check("meta-llama/Llama-3.1-70B", settings, method="sft", tokens=1e6, seq_len=2048, device=device,
                     echo=lambda _: None)
    assert "--gpus 2 with --strategy fsdp (FSDP + QLoRA shards the base weights)" in error.value.message


def test_sft_dry_run_prints_the_exact_command_and_trains_nothing(rung, tmp_path):
    out = tmp_path / "run"
    result = rung("train", "sft", "--data", SFT_DATA, "--out", out, "--gpus", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    command = next(line for line in result.output.splitlines() if line.startswith("Command: "))
    argv = shlex.split(command[len("Command: "):])
    assert argv[1:] == ["launch", "--config_file", str(out / "accelerate_config.yaml"), "--num_processes", "2",
                        "--num_machines", "1", "--machine_rank", "0", "--main_process_port", "29500",
                        "-m", "rung.trainers.worker", "--job", str(out / "sft_job.json")]
    job = json.loads((out / "sft_job.json").read_text())
    assert job["pipeline"] == "sft" and job["data"] == str(SFT_DATA.resolve()) and job["strategy"] == "ddp"
    assert "distributed_type: MULTI_GPU" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["accelerate_config.yaml", "resolved_config.yaml",
                                                     "sft_job.json"]  # nothing trained
    # the folder is rung's: the real run may use it without --overwrite
    again = rung("train", "sft", "--data", SFT_DATA, "--out", out, "--gpus", "2", "--dry-run")
    assert again.exit_code == 0, again.output


def test_dpo_dry_run_on_two_nodes(rung, tmp_path):
    out = tmp_path / "run"
    result = rung("train", "dpo", "--data", PAIRS, "--out", out, "--gpus", "8", "--nodes", "2", "--node-rank", "1",
                  "--main-address", "10.0.0.1", "--strategy", "fsdp", "--dry-run")
    assert result.exit_code == 0, result.output
    command = next(line for line in result.output.splitlines() if line.startswith("Command: "))
    assert shlex.split(command)[2:] == [
        "launch", "--config_file", str(out / "accelerate_config.yaml"), "--num_processes", "16", "--num_machines", "2",
        "--machine_rank", "1", "--main_process_ip", "10.0.0.1", "--main_process_port", "29500",
        "-m", "rung.trainers.worker", "--job", str(out / "dpo_job.json")]
    assert json.loads((out / "dpo_job.json").read_text())["pipeline"] == "dpo"


@pytest.mark.parametrize("flags, says", [
    (["--gpus", "2", "--nodes", "2"], "--nodes 2 needs --main-address HOST"),
    (["--gpus", "2", "--nodes", "2", "--node-rank", "2", "--main-address", "h"],
     "--node-rank 2: must be between 0 and 1"),
    (["--gpus", "2", "--cpu", "--strategy", "fsdp"], "--strategy fsdp needs GPUs; with --cpu only ddp"),
    (["--gpus", "2", "--nodes", "2", "--main-address", "h", "--main-port", "0"], "--main-port 0 (any free port)"),
    (["--gpus", "2", "--cpu", "--adapter", "qlora"], "--cpu with --adapter qlora"),
])
@pytest.mark.parametrize("command, data", [("sft", SFT_DATA), ("dpo", PAIRS)])
def test_bad_cluster_flags_exit_2_with_one_line(rung, tmp_path, command, data, flags, says):
    out = tmp_path / "o"
    result = rung("train", command, "--data", data, "--out", out, *flags)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()] and says in result.output
    assert result.output.startswith("Error: ") and not out.exists()  # nothing written


def test_gpus_without_cuda_says_add_cpu(rung, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA GPUs")
    result = rung("train", "sft", "--data", SFT_DATA, "--out", tmp_path / "o", "--gpus", "2")
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        "Error: --gpus 2: this machine has no CUDA GPU; add --cpu to run 2 CPU processes (gloo) instead"]
    assert not (tmp_path / "o").exists()


def test_job_files_and_the_worker(tmp_path):
    path = jobs.write_job(tmp_path, "dpo", DPOSettings(beta=0.2), data="/d/pairs.jsonl", resume=False)
    job = jobs.read_job(path)
    assert path.name == "dpo_job.json" and job["pipeline"] == "dpo" and job["out_dir"] == str(tmp_path.resolve())
    assert jobs.job_settings(DPOSettings, job).beta == 0.2
    legacy = tmp_path / "cpt_job.json"  # written before SFT/DPO launched: no "pipeline"
    legacy.write_text(json.dumps({"settings": {"max_length": 64}, "corpus": [], "out_dir": str(tmp_path)}))
    assert jobs.read_job(legacy)["pipeline"] == "cpt"
    bad = tmp_path / "bad_job.json"
    bad.write_text(json.dumps({"pipeline": "rlhf", "settings": {}}))
    with pytest.raises(RungError, match='pipeline "rlhf" is not one of sft, dpo, cpt'):
        jobs.read_job(bad)
    # the worker entry: a bad job is one line and exit 2, before torch loads
    done = subprocess.run([sys.executable, "-m", "rung.trainers.worker", "--job", str(bad)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f'Error: {bad}: pipeline "rlhf" is not one of sft, dpo, cpt, grpo']
    from rung.trainers.worker import main

    assert main(["--job", str(path)], only="grpo") == 2  # `python -m rung.engines.grpo` runs GRPO jobs only


def test_launched_strategy_from_the_environment(monkeypatch):
    for key in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert jobs.launched_strategy() is None and jobs.quant_storage_dtype() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert jobs.launched_strategy() == "ddp" and not jobs.weights_sharded()
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert jobs.launched_strategy() == "zero3" and jobs.quant_storage_dtype() == "bfloat16"
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert jobs.launched_strategy() == "fsdp" and jobs.weights_sharded()


@pytest.mark.parametrize("engine", ["sft", "dpo"])
def test_rung_run_hands_sft_and_dpo_steps_to_the_launcher(engine, tmp_path, monkeypatch, capsys):
    """--gpus 2 on a step: the same launcher as `rung train`, the step's metrics read back from metrics.json, and
    no "runs in this one process" warning any more."""
    from rung.core.protocol import StepContext
    from rung.engines import dpo, sft

    calls = []

    def runner(cmd, env=None):  # stands in for `accelerate launch`: records it, writes what rank 0 would
        calls.append(cmd)
        (tmp_path / "run" / "metrics.json").write_text(json.dumps(
            {"global_step": 7, "final_loss": 0.5, "processes": 2, "pairs_after": {"reward_margin": 1.0}}))
        return 0

    monkeypatch.setattr(launch, "subprocess_runner", runner)
    plan = {"base_model": "builtin:tiny", "data": {"train": str(SFT_DATA), "preferences": str(PAIRS)}}
    ctx = StepContext(plan=plan, plan_dir=tmp_path, run_dir=tmp_path / "run", gpus=2)
    ctx.run_dir.mkdir()
    result = (sft if engine == "sft" else dpo).run_step({"id": engine, "engine": engine}, ctx)
    (cmd,) = calls
    assert cmd[cmd.index("-m") + 1:] == ["rung.trainers.worker", "--job", str(ctx.run_dir / f"{engine}_job.json")]
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    job = json.loads((ctx.run_dir / f"{engine}_job.json").read_text())
    assert job["pipeline"] == engine and job["settings"]["model_name_or_path"] == "builtin:tiny"
    assert result.metrics["global_step"] == 7 and "2 processes" in result.summary
    assert yaml.safe_load((ctx.run_dir / "accelerate_config.yaml").read_text())["num_processes"] == 2
    assert "one process" not in capsys.readouterr().err


def test_fsdp_activation_checkpointing_turns_the_trainers_off(monkeypatch):
    """The launcher asks FSDP to checkpoint activations (the test above); the Trainer refuses both at once, so the
    worker's TRL config leaves its own off."""
    import dataclasses
    from typing import Any

    from rung.trainers.common import trl_fields

    fields = [(f.name, Any, None) for f in dataclasses.fields(SFTSettings)] + [("activation_checkpointing", Any, None)]
    config_cls = dataclasses.make_dataclass("TrainingConfig", fields)  # stands in for TRL's SFTConfig
    settings = SFTSettings(gradient_checkpointing=True)
    monkeypatch.delenv("FSDP_ACTIVATION_CHECKPOINTING", raising=False)
    assert trl_fields(settings, config_cls)["activation_checkpointing"] is True
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    assert trl_fields(settings, config_cls)["activation_checkpointing"] is False


def test_dpo_from_an_sft_adapter_is_sized_by_its_base(tmp_path):
    """`rung train dpo --base-model SFT_OUT --gpus N`: the strategy is sized on the adapter's base model."""
    sft_out = tmp_path / "sft"
    sft_out.mkdir()
    (sft_out / "adapter_config.json").write_text("{}")
    base = {"settings": {"model_name_or_path": "Qwen/Qwen2.5-72B"}}
    (sft_out / "resolved_config.yaml").write_text(yaml.safe_dump(base))
    result = _dry("dpo", DPOSettings(model_name_or_path=str(sft_out)), tmp_path / "dpo", gpus=2, gpu_memory_gb=80)
    assert result["strategy"] == "fsdp" and "sharding weights" in result["why"]  # 72B LoRA: ~145 GB of bf16 weights
