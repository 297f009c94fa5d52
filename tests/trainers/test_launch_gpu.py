"""The plugins accelerate builds from rung's launch configs, under a real `accelerate launch` on a CUDA GPU.

The CPU tests (test_launch.py, test_cpt_launch.py) check rung's own config files through accelerate's public
loader and parser; building the FSDP/DeepSpeed plugins needs CUDA (FSDP1 syncs module states on the current
device), so it happens here, in a launched process, through public APIs only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# What one launched process sees: the Accelerator's state, built from the environment accelerate launch set.
REPORT = """
import json
from accelerate import Accelerator
state = Accelerator().state
fsdp, ds = state.fsdp_plugin, state.deepspeed_plugin
print(json.dumps({
    "distributed_type": str(state.distributed_type),
    "fsdp": None if fsdp is None else {
        "version": fsdp.fsdp_version, "state_dict_type": fsdp.state_dict_type.name,
        "activation_checkpointing": fsdp.activation_checkpointing,
        "cpu_ram_efficient_loading": fsdp.cpu_ram_efficient_loading,
        "use_orig_params": getattr(fsdp, "use_orig_params", None),
        "sync_module_states": fsdp.sync_module_states},
    "deepspeed": None if ds is None else {"zero_stage": ds.zero_stage,
                                          "gradient_clipping": ds.deepspeed_config.get("gradient_clipping")},
}))
"""


def _launched_state(tmp_path: Path, config_path: Path) -> dict:
    config = yaml.safe_load(config_path.read_text())
    config.update(num_processes=1, num_machines=1, machine_rank=0)  # one GPU is enough to build the plugin
    single = tmp_path / "single.yaml"
    single.write_text(yaml.safe_dump(config))
    script = tmp_path / "report.py"
    script.write_text(REPORT)
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(single),
                           str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fsdp_qlora_plugin_is_the_documented_one(tmp_path):
    from rung.core.settings import SFTSettings
    from rung.trainers import launch

    job = {"data": str(EXAMPLES / "sql_assistant/data/train.jsonl"), "eval_data": None}
    result = launch.launch("sft", SFTSettings(adapter="qlora", gradient_checkpointing=True), tmp_path / "run",
                           job=job, dry_run=True, echo=lambda line: None, gpus=4, strategy="fsdp", gpu_memory_gb=80)
    state = _launched_state(tmp_path, Path(result["config_path"]))
    assert state["fsdp"]["version"] == 1 and state["fsdp"]["use_orig_params"] is False
    assert state["fsdp"]["state_dict_type"] == "SHARDED_STATE_DICT" and state["fsdp"]["sync_module_states"]
    assert state["fsdp"]["activation_checkpointing"] is False and state["fsdp"]["cpu_ram_efficient_loading"]


def test_cpt_fsdp_plugin_is_fsdp2_with_full_state_dict(tmp_path):
    from rung.trainers.launch import accelerate_config, write_config

    path = write_config(accelerate_config("fsdp", num_processes=1, activation_checkpointing=True), tmp_path)
    state = _launched_state(tmp_path, path)
    assert state["fsdp"]["version"] == 2 and state["fsdp"]["state_dict_type"] == "FULL_STATE_DICT"
    assert state["fsdp"]["activation_checkpointing"] is True
