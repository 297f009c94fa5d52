"""Shared test setup: offline, one torch thread, a CliRunner, and the built-in tiny model."""

from __future__ import annotations

import os
from pathlib import Path

# Offline before anything imports huggingface_hub; one thread because two cores shared with other
# load slow torch 4-40x (docs/development.md, "Measured on 2 cores").
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest
from click.testing import CliRunner


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def rung(runner):
    """Invoke `rung ARGS...` in-process; returns click's Result."""
    from rung.cli.main import cli

    def invoke(*args, input=None):
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def tiny_model_dir():
    """Path of the built-in tiny model (built once per cache, then reused)."""
    from rung.core.models import builtin_tiny_path

    return builtin_tiny_path()


@pytest.fixture(scope="session")
def transformers_server(tmp_path_factory, tiny_model_dir):
    """A real `transformers serve` on 127.0.0.1 serving builtin:tiny's folder (OpenAI-compatible API).

    Yields (base_url, model_name); the model name in requests is the folder path it was started with.
    Up in ~7-20 s on 2 cores; always terminated. Needs `transformers[serving]` (fastapi, uvicorn; in the dev extra).
    """
    import importlib.util
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f'transformers serve needs {", ".join(missing)}: pip install "transformers[serving]"')
    with socket.socket() as probe:  # a free port; the server binds it a moment later
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path_factory.mktemp("transformers-serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
               "serve", str(tiny_model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"transformers serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not up after 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield base_url, str(tiny_model_dir)
    finally:
        process.terminate()  # it stops on SIGTERM
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def sql_lora_run(tmp_path_factory, tiny_model_dir):
    """builtin:tiny after 60 LoRA SFT steps on the SQL example (a few seconds), trained once for the whole suite:
    the gate ships it against its base, export converts and reloads it. Tests read it; none may write into it."""
    from click.testing import CliRunner

    from rung.cli.main import cli

    sql = Path(__file__).resolve().parents[1] / "examples" / "sql_assistant" / "data"
    out = tmp_path_factory.mktemp("sql-lora") / "sft"
    result = CliRunner().invoke(cli, ["train", "sft", "--data", str(sql / "train.jsonl"), "--out", str(out),
                                      "--max-steps", "60", "--learning-rate", "2e-3", "--eval-fraction", "0",
                                      "--save-steps", "1000"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL 16 with pgvector (PyPI pgserver, in the dev extra) on a unix socket in a temp
    folder, started once per session (~1-3 s), stopped and deleted after. Yields the socket folder.

    As root, pgserver runs the server as a system user `pgserver` (it creates it with useradd) and opens
    read+search permission on the folders above the data folder: postgres refuses to run as root."""
    pgserver = pytest.importorskip("pgserver", reason='the PostgreSQL tests need pgserver: pip install -e ".[dev]"')
    from urllib.parse import parse_qs, urlsplit

    import tempfile
    from pathlib import Path

    # Not under pytest's temp folders: pytest keeps those 0700 (re-applied as it makes new ones), and the
    # server's user must reach the data folder to stop the server.
    folder = Path(tempfile.mkdtemp(prefix="rung-pg-"))
    server = pgserver.get_server(folder, cleanup_mode="delete")
    try:
        yield parse_qs(urlsplit(server.get_uri()).query)["host"][0]
    finally:
        server.cleanup()


@pytest.fixture
def pg_url(pg_server, request):
    """make(name=None): the URL of a fresh index table in the session's PostgreSQL (unique per test)."""
    import hashlib
    import itertools

    base = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    counter = itertools.count()

    def make(name: str | None = None) -> str:
        return f"postgresql://postgres@/postgres?host={pg_server}&table={name or f't{base}_{next(counter)}'}"

    return make
