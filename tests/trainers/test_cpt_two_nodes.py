"""A CPT step through `rung run --nodes 2` on one machine: two `rung run` processes, node ranks 0 and 1, meet on
127.0.0.1 (gloo on CPU) through the shared launcher and worker, as two real nodes would, each with its own run
folder. Rank 0's node writes the model and metrics.json; rank 1's node trains its share and finishes its step
without them (it used to read metrics.json after the launch and crash)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# The real command line, as a console script runs it: `rung run ... --nodes 2 --cpu` (one process per node, gloo).
RUNG = "import sys; from rung.cli.main import main; sys.argv[0] = 'rung'; sys.exit(main())"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cpt_step_on_two_nodes(tmp_path, tiny_model_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sources = sorted(p for p in (ROOT / "examples" / "domain_corpus" / "corpus").iterdir() if p.suffix in (".md", ".txt"))
    (corpus / "notes.md").write_text("\n\n".join(p.read_text() for p in sources)[:40_000])  # ~10k tokens
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "version": 1, "name": "cpt-two-nodes", "route": "continued_pretraining", "base_model": str(tiny_model_dir),
        "data": {"corpus": str(corpus)},
        "steps": [{"id": "cpt", "engine": "cpt", "settings": {
            "max_steps": 2, "max_length": 32, "per_device_train_batch_size": 2, "logging_steps": 1,
            "save_steps": 100, "eval_strategy": "no", "max_eval_samples": 2}}]}))
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    nodes = [subprocess.Popen(
        [sys.executable, "-c", RUNG, "run", str(plan), "--out", str(tmp_path / f"node{rank}"), "--cpu",
         "--nodes", "2", "--node-rank", str(rank), "--main-address", "127.0.0.1", "--main-port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    try:
        outputs = [node.communicate(timeout=240)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for rank, (node, output) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f"node {rank}:\n{output[-4000:]}"
    main, other = tmp_path / "node0" / "cpt", tmp_path / "node1" / "cpt"
    metrics = json.loads((main / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["global_step"] == 2 and metrics["final_loss"] is not None
    assert (main / "model" / "model.safetensors").exists() and (main / "report.md").exists()
    # rank 1 ran both steps on its node and wrote no model or metrics there
    assert json.loads((other / "ranks" / "rank1.json").read_text())["global_step"] == 2
    assert not (other / "metrics.json").exists() and not (other / "model" / "model.safetensors").exists()
    config = yaml.safe_load((other / "accelerate_config.yaml").read_text())
    assert (config["num_machines"], config["machine_rank"], config["use_cpu"]) == (2, 1, True)
    state = json.loads((tmp_path / "node1" / "run_state.json").read_text())
    assert state["steps"]["cpt"]["status"] == "done"
    assert "node 1: trained its processes' share" in (tmp_path / "node1" / "report.md").read_text()
