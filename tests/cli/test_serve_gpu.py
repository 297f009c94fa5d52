"""GPU: `rung serve RUN --engine vllm` serves a LoRA run as base + adapter and answers through the openai client.
Skipped without CUDA or vLLM (CI runs `-m "not gpu"`; run on a GPU machine with `pytest -m gpu`)."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM: pip install vllm")]

DATA = Path(__file__).resolve().parents[2] / "examples" / "sql_assistant" / "data"


def test_vllm_serves_a_lora_run_and_answers(rung, tmp_path):
    trained = rung("train", "sft", "--data", DATA / "train.jsonl", "--out", tmp_path / "run", "--max-steps", "5",
                   "--eval-fraction", "0", "--save-steps", "1000")
    assert trained.exit_code == 0, trained.output
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-c", "from rung.cli.main import main; main()", "serve",
                                str(tmp_path / "run"), "--engine", "vllm", "--port", str(port), "--wait", "600"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    try:
        deadline, lines, name = time.monotonic() + 660, [], None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Serving at "):
                name = line.split("(model name: ", 1)[1].rstrip(")\n")
                break
        assert name, "".join(lines[-40:])
        from openai import OpenAI

        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY")
        reply = client.chat.completions.create(model=name, max_tokens=8, temperature=0,
                                               messages=[{"role": "user", "content": "How many orders?"}])
        assert isinstance(reply.choices[0].message.content, str)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
