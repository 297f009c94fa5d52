"""`rung serve` talks only to the server it started, and leaves nothing behind: a busy port refused before
starting, a self-test another server answers does not count, the child dies with rung however rung dies,
and the merged folders of a killed rung go at the next start. Real processes and sockets on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..misbehaving_server import MisbehavingServer
from rung.cli.serve import ServeFailed, supervise
from rung.cli.serve_safety import LOG_PREFIX, MERGED_PREFIX, clean_stale_merges, http_serves, port_problem


def gone(pid: int) -> bool:
    """True once pid no longer runs (a zombie nobody reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in state


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_busy_port_is_refused_before_anything_starts(rung, tiny_model_dir):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert "already in use by another process" in port_problem("127.0.0.1", port)
        result = rung("serve", str(tiny_model_dir), "--port", str(port), "--engine", "transformers")
    assert result.exit_code == 2, result.output
    assert f"127.0.0.1:{port} is already in use" in result.output and "Starting" not in result.output


def test_a_free_port_and_odd_hosts():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert port_problem("127.0.0.1", port) is None
    assert "not an address of this machine" in port_problem("no such host.invalid", port)


def test_another_server_answering_the_self_test_does_not_count(tmp_path):
    # the child never listens; a different server on the URL answers chats, but lists another model
    with MisbehavingServer("ok") as other:
        assert http_serves(other.base_url, "alpha") and not http_serves(other.base_url, "mine")
        with pytest.raises(ServeFailed, match="did not answer a chat request within 1 s") as error:
            supervise([sys.executable, "-c", "import time; time.sleep(60)"], base_url=other.base_url, model="mine",
                      log_path=tmp_path / "log", ready_timeout_s=1, poll_s=0.1, grace_s=2, echo=lambda line: None)
    assert error.value.exit_code == 3


CHILD_OF_RUNG = """
import os, sys, time
from pathlib import Path
from rung.cli.serve import PopenRunner
ignore_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
child = PopenRunner().start([sys.executable, "-c", ignore_term], Path(sys.argv[1]), dict(os.environ))
print(child.pid, flush=True)
time.sleep(60)
"""


def test_the_server_dies_with_rung_even_after_sigterm_then_sigkill(tmp_path):
    log = tmp_path / "server.log"
    parent = subprocess.Popen([sys.executable, "-c", CHILD_OF_RUNG, str(log)], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while "up" not in log.read_text() and time.monotonic() < deadline:  # the child's own handler is set
            time.sleep(0.05)
        os.killpg(child, signal.SIGTERM)  # what rung forwards: this server ignores it
        time.sleep(0.2)
        assert not gone(child)
        parent.send_signal(signal.SIGKILL)  # then rung is killed outright
        parent.wait(timeout=5)
        assert wait_gone(child), "the server outlived rung"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and not gone(child):  # the test failed: leave no orphan behind
            os.killpg(child, signal.SIGKILL)


def test_merged_folders_of_a_killed_rung_go_at_the_next_start(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{MERGED_PREFIX}{dead.pid}-abc"
    alive = tmp_path / f"{MERGED_PREFIX}{os.getppid()}-def"
    mine = tmp_path / f"{MERGED_PREFIX}{os.getpid()}-ghi"
    other = tmp_path / "rung-serve-merged-notapid"
    for folder in (stale, alive, mine, other):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x")
    old_log, live_log = tmp_path / f"{LOG_PREFIX}{dead.pid}-8000-x.log", tmp_path / f"{LOG_PREFIX}{os.getppid()}-1-y.log"
    old_log.write_text("log\n")
    live_log.write_text("log\n")
    assert sorted(clean_stale_merges(str(tmp_path))) == sorted([stale, old_log])
    assert not stale.exists() and alive.exists() and mine.exists() and other.exists()
    assert not old_log.exists() and live_log.exists()
