"""`rung serve`: start an existing OpenAI-compatible server on a model, never one of rung's own.

    transformers  `transformers serve FOLDER` (CPU or one GPU; development). A LoRA run is merged into a
                  temporary folder first (transformers serve takes one model folder); the folder goes when it stops.
    vllm          `vllm serve` (GPU). A LoRA run is served as its base plus the adapter: --enable-lora
                  --lora-modules NAME=RUN --max-lora-rank R; requests name NAME to get the fine-tuned model.
    llama.cpp     `python -m rung.cli.llama_server --model FILE.gguf` (llama-cpp-python's server, `rung[export]`,
                  with llama.cpp's weight repacking off: cli/llama_server.py),
                  for a GGUF or an export folder holding one.

The launch command is built by a pure function (build_command) and run by an injectable runner (PopenRunner:
its own process group, so SIGINT/SIGTERM/SIGHUP reach every process the server starts, and PR_SET_PDEATHSIG on
Linux, so it dies with rung even if rung is killed). The port is bind-tested first: a busy one is refused
before anything starts, so the self-test cannot be answered by another server; and the self-test counts only
while the child is alive and its /v1/models names the model rung started. rung waits until the server answers
one chat request, prints the base URL, the model name to send and the exact command, then forwards the signal
and waits for the server to stop (SIGKILL to the group after STOP_GRACE_S). Exit codes: 0 stopped on request,
2 bad input (a busy port included), 3 the server did not come up or stopped on its own.

The endpoint is what `rung probe` and `rung gate` talk to: --model openai:NAME --api-base URL.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from rung.cli.serve_safety import (LOG_PREFIX, MERGED_PREFIX, clean_stale_merges, death_signal_setter, http_serves,
                                   port_problem)
from rung.core.errors import RungError, did_you_mean
from rung.cli.options import settings_from_flags, settings_options
from rung.core.settings import ServeSettings

ENGINES = ("transformers", "vllm", "llama.cpp")
DEFAULT_PORT = ServeSettings.port
READY_TIMEOUT_S = ServeSettings.wait_s
STOP_GRACE_S = 20        # after the forwarded signal, then SIGKILL to the whole process group
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts
INSTALL = {
    "transformers": ('transformers serve needs fastapi and uvicorn: pip install "transformers[serving]"',
                     ("fastapi", "uvicorn")),
    "vllm": ("vLLM is not installed (it needs a CUDA GPU): pip install vllm", ("vllm",)),
    "llama.cpp": ('llama.cpp\'s server is not installed: pip install "rung[export]" (llama-cpp-python[server], '
                  "compiles llama.cpp: minutes)", ("llama_cpp", "uvicorn", "fastapi")),
}


class ServeFailed(RungError):
    """The server did not come up, or stopped on its own: exit 3 (1 is the gate's DON'T SHIP alone)."""

    exit_code = 3



@dataclass(frozen=True)
class Target:
    kind: str                     # "model" (a Hugging Face folder or hub id), "adapter" (PEFT folder), "gguf"
    path: str                     # the folder, hub id or file
    name: str                     # the model name clients send
    base: str | None = None       # adapter: its base model (folder or hub id)
    base_name: str | None = None  # adapter: the base's served name
    lora_rank: int | None = None


# ---------------------------------------------------------------------------------------------- targets


def _short_name(spec: str) -> str:
    path = Path(spec)
    name = path.stem if path.suffix == ".gguf" else path.name
    return (name or spec).replace(":", "-")


def resolve_target(spec: str) -> Target:
    """What MODEL_OR_RUN names: a GGUF file (or a folder holding exactly one), a PEFT adapter run, or a model
    (folder, hub id, builtin:NAME). Reads small files only; a problem is one RungError line."""
    from rung.core.gguf_in import NAMED_MODELS, OLLAMA_PREFIX, named_model_file, ollama_blob, read_header
    from rung.core.inputs import check_model_spec

    if spec in NAMED_MODELS or spec.startswith(OLLAMA_PREFIX):  # a GGUF by name: served as the file
        path = named_model_file(spec) if spec in NAMED_MODELS else ollama_blob(spec)
        read_header(path, spec, for_transformers=False)
        return Target("gguf", str(path.resolve()), _short_name(spec))
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        read_header(path, spec, for_transformers=False)  # a text file or a cut-short one: one line, now
        return Target("gguf", str(path.resolve()), _short_name(str(path)))
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs and not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            if len(ggufs) > 1:
                raise RungError(f"MODEL_OR_RUN: {path} holds {len(ggufs)} GGUF files "
                                f"({', '.join(g.name for g in ggufs)}): name one")
            read_header(ggufs[0], for_transformers=False)
            return Target("gguf", str(ggufs[0].resolve()), _short_name(str(ggufs[0])))
    resolved, problem = check_model_spec(spec, Path.cwd(), "MODEL_OR_RUN")
    if problem:
        raise RungError(problem)
    from rung.core.models import adapter_base, is_adapter_dir, is_builtin, resolve_model

    if is_adapter_dir(resolved):
        folder = Path(resolved)
        base = adapter_base(folder)
        base_path = resolve_model(base) if is_builtin(base) or Path(base).expanduser().exists() else base
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        return Target("adapter", str(folder), _short_name(str(folder)), base=base_path, base_name=_short_name(base),
                      lora_rank=int(config.get("r") or 16))
    target = resolve_model(resolved)
    return Target("model", target, _short_name(spec))


def engine_for(target: Target, engine: str) -> str:
    """--engine auto: llama.cpp for a GGUF, else transformers."""
    if engine != "auto":
        return engine
    return "llama.cpp" if target.kind == "gguf" else "transformers"


def engine_problems(engine: str, target: Target, *, check_installed: bool = True) -> list[str]:
    import importlib.util

    if engine not in ENGINES:
        return [f'--engine "{engine}" is not one of auto, {", ".join(ENGINES)}{did_you_mean(engine, ENGINES)}']
    problems = []
    if engine == "llama.cpp" and target.kind != "gguf":
        problems.append(f"llama.cpp serves GGUF files; {target.path} is not one: rung export {target.path} "
                        "--out DIR --format gguf, then rung serve DIR")
    if engine in ("transformers", "vllm") and target.kind == "gguf":
        problems.append(f"{engine} serves Hugging Face model folders; for {target.path} use --engine llama.cpp "
                        "(or serve the safetensors export)")
    if engine == "vllm" and target.kind == "adapter":
        config = json.loads((Path(target.path) / "adapter_config.json").read_text(encoding="utf-8"))
        if config.get("modules_to_save"):
            problems.append(f"vLLM's LoRA cannot load an adapter with modules_to_save "
                            f"({', '.join(config['modules_to_save'])}): rung export {target.path} --out DIR, then "
                            "rung serve DIR --engine vllm")
    if check_installed and not problems:
        hint, modules = INSTALL[engine]
        if any(importlib.util.find_spec(m) is None for m in modules):
            problems.append(hint)
    return problems


# ---------------------------------------------------------------------------------------------- commands


def build_command(engine: str, target: Target, *, host: str, port: int, python: str = sys.executable,
                  vllm: str = "vllm", extra: Sequence[str] = ()) -> list[str]:
    """The exact command line that serves `target` with `engine`. Pure: no I/O, nothing checked."""
    if engine == "transformers":
        if target.kind != "model":
            raise ValueError(f"transformers serve takes a model folder, not a {target.kind}")
        command = [python, "-m", "transformers.cli.transformers", "serve", target.path,
                   "--host", host, "--port", str(port)]
    elif engine == "vllm":
        if target.kind == "adapter":
            rank = next((r for r in VLLM_LORA_RANKS if r >= (target.lora_rank or 16)), target.lora_rank)
            command = [vllm, "serve", str(target.base), "--host", host, "--port", str(port),
                       "--served-model-name", str(target.base_name), "--enable-lora",
                       "--lora-modules", f"{target.name}={target.path}", "--max-lora-rank", str(rank)]
        else:
            command = [vllm, "serve", target.path, "--host", host, "--port", str(port),
                       "--served-model-name", target.name]
    elif engine == "llama.cpp":
        command = [python, "-m", "rung.cli.llama_server", "--model", target.path, "--host", host, "--port", str(port),
                   "--model_alias", target.name]
    else:
        raise ValueError(f"unknown engine {engine!r}")
    return command + list(extra)


def served_name(engine: str, target: Target) -> str:
    """The model name requests carry: transformers serve answers to the folder it was started with."""
    return target.path if engine == "transformers" else target.name


# ---------------------------------------------------------------------------------------------- running


class PopenRunner:
    """Starts the server in its own process group (signals reach its workers too), output to a log file."""

    def start(self, command: list[str], log_path: Path, env: dict[str, str]):
        log = open(log_path, "ab")
        try:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True, preexec_fn=death_signal_setter())
        finally:
            log.close()

    def signal(self, process, signum: int) -> None:
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass


# The self-test is a real question with room for a real answer (8 tokens of "Say hello." came back as three
# emoji bytes, cut mid-character): what it answers is printed, so a broken template or tokenizer shows at once.
SELF_TEST_QUESTION = "What is the capital of France? Answer in one sentence."
SELF_TEST_TOKENS = 48


def http_ready(base_url: str, model: str, timeout: float = 30.0) -> str | None:
    """The answer to one small chat request, or None while the server is not ready."""
    import urllib.error
    import urllib.request

    body = json.dumps({"model": model, "messages": [{"role": "user", "content": SELF_TEST_QUESTION}],
                       "max_tokens": SELF_TEST_TOKENS, "temperature": 0}).encode()
    request = urllib.request.Request(f"{base_url}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer EMPTY"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = json.loads(response.read(1 << 20).decode("utf-8", "replace"))
    except (OSError, ValueError, urllib.error.HTTPError):
        return None
    try:
        return str(reply["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError):
        return None


def free_port(host: str) -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def log_tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except OSError:
        return ""


def supervise(command: list[str], *, base_url: str, model: str, log_path: Path, runner: Any = None,
              ready: Callable[[str, str], str | None] = http_ready, ready_timeout_s: float = READY_TIMEOUT_S,
              grace_s: float = STOP_GRACE_S, echo: Callable[[str], None] = click.echo,
              poll_s: float = 0.5, env: dict[str, str] | None = None,
              serves: Callable[[str, str], bool] = http_serves) -> int:
    """Start the server, wait until it answers a chat request, then until SIGINT/SIGTERM (forwarded) or until it
    exits. Returns the server's exit code after a requested stop; raises ServeFailed when it did not come up or
    stopped on its own. The server's processes are always gone when this returns."""
    runner = runner or PopenRunner()
    received: list[int] = []
    process = runner.start(command, log_path, env if env is not None else dict(os.environ))

    def forward(signum, _frame) -> None:
        received.append(signum)
        runner.signal(process, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        echo(f"Starting (pid {process.pid}, log {log_path}): {shlex.join(command)}")
        deadline = time.monotonic() + ready_timeout_s
        answer = None
        while not received:
            if process.poll() is not None:
                raise ServeFailed(f"the server exited with code {process.returncode} before it answered:\n"
                                  f"{log_tail(log_path)}")
            answer = ready(base_url, model)
            # the answer counts only from our own child, alive, serving the model it was started with
            if answer is not None and process.poll() is None and serves(base_url, model):
                break
            answer = None
            if time.monotonic() > deadline:
                raise ServeFailed(f"the server did not answer a chat request within {ready_timeout_s:.0f} s "
                                  f"(log {log_path}):\n{log_tail(log_path)}")
            time.sleep(poll_s)
        if answer is not None:
            echo(f"Serving at {base_url}  (model name: {model})")
            echo(f"Command: {shlex.join(command)}")
            echo(f"It answered a test question ({SELF_TEST_QUESTION!r}): {' '.join(answer.split())[:160]!r}")
            echo(f"Measure it: rung probe ... --model openai:{model} --api-base {base_url}  "
                 "(OpenAI-compatible; any API key). Ctrl-C stops it.")
        stop_at = None
        while True:
            try:
                code = process.wait(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                if received and stop_at is None:
                    stop_at = time.monotonic() + grace_s
                if stop_at is not None and time.monotonic() > stop_at:
                    runner.signal(process, signal.SIGKILL)
        if not received:
            raise ServeFailed(f"the server stopped on its own with code {code} (log {log_path}):\n{log_tail(log_path)}")
        echo(f"Stopped (signal {signal.Signals(received[0]).name} forwarded; the server exited with {code}).")
        return code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if process.poll() is None:  # an error above, or a server that ignored the signal
            runner.signal(process, signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                runner.signal(process, signal.SIGKILL)
                process.wait()


# ---------------------------------------------------------------------------------------------- command


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("model_or_run", metavar="MODEL_OR_RUN")
@settings_options(ServeSettings, values=True)
@click.option("--log", "log_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The server's output (default: a rung-serve-log-*.log file in the temp folder, removed at the "
                   "next start).")
@click.option("--dry-run", is_flag=True, help="Print the command and exit without starting it.")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED, metavar="[-- ENGINE_ARGS...]")
def serve(model_or_run: str, log_path: Path | None, dry_run: bool, extra: tuple[str, ...], **flags: Any) -> None:
    """Serve a model or run over an OpenAI-compatible API with transformers, vLLM or llama.cpp.

    MODEL_OR_RUN is a model folder, a rung run (LoRA adapter), builtin:tiny, a hub id, a .gguf file or an export
    folder holding one. Arguments after `--` go to the server unchanged. rung waits for the first answer, prints
    the base URL and the command, and stops the server on Ctrl-C.
    """
    import tempfile

    settings = settings_from_flags(ServeSettings, flags)
    engine, host, port, wait_s = settings.engine, settings.host, settings.port, settings.wait_s
    target = resolve_target(model_or_run)
    engine = engine_for(target, engine)
    problems = engine_problems(engine, target, check_installed=not dry_run)
    if port == 0:
        port = free_port(host)
    elif not dry_run:
        busy = port_problem(host, port)
        if busy:
            problems.append(busy)
    if log_path is not None and not dry_run:
        problems += log_problems(log_path)
    if problems:
        install_only = engine in INSTALL and problems == [INSTALL[engine][0]]
        if install_only and not (engine == "transformers" and target.kind == "adapter"):
            problems.append("the command would be: " + shlex.join(build_command(engine, target, host=host, port=port,
                                                                                  extra=extra)))
        raise RungError(problems)
    if not dry_run:
        clean_stale_merges()
    merged_dir = None
    if engine == "transformers" and target.kind == "adapter":
        if dry_run:
            click.echo("(the adapter would first be merged into its base in a temporary folder)")
            target = Target("model", "<merged folder>", target.name)
        else:
            merged_dir = Path(tempfile.mkdtemp(prefix=f"{MERGED_PREFIX}{os.getpid()}-"))
            click.echo(f"Merging {target.path} into {target.base} for transformers serve ({merged_dir}) ...")
            _merge_into(target.path, merged_dir)
            target = Target("model", str(merged_dir), target.name)
    command = build_command(engine, target, host=host, port=port, extra=extra)
    name = served_name(engine, target)
    if dry_run:
        click.echo(shlex.join(command))
        return
    if log_path is None:
        handle, raw = tempfile.mkstemp(prefix=f"{LOG_PREFIX}{os.getpid()}-{port}-", suffix=".log")
        os.close(handle)
        log_path = Path(raw)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        supervise(command, base_url=f"http://{_url_host(host)}:{port}/v1", model=name, log_path=log_path,
                  ready_timeout_s=wait_s, env=env)
    finally:
        if merged_dir is not None:
            import shutil

            shutil.rmtree(merged_dir, ignore_errors=True)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _merge_into(adapter_dir: str, folder: Path) -> None:
    from rung.trainers.common import quiet_libraries
    from rung.trainers.export.safetensors import write_safetensors
    from rung.trainers.export.source import load_source

    quiet_libraries()
    source = load_source(adapter_dir, prompts=False)
    write_safetensors(source.model, source.tokenizer, folder)


def log_problems(path: Path) -> list[str]:
    """--log must be a regular file (or not exist yet) in an existing folder: a FIFO would block the server's
    start forever, a link would have the log written elsewhere."""
    from rung.core.fileio import file_kind

    if path.is_symlink():
        return [f"--log {path} is a symbolic link: name the file itself"]
    if path.exists() and not path.is_file():
        return [f"--log {path} is {file_kind(path.stat().st_mode)}, not a regular file"]
    if not path.parent.is_dir():
        return [f"--log {path}: the folder {path.parent} does not exist"]
    return []


__all__ = ["serve", "build_command", "resolve_target", "supervise", "Target", "PopenRunner", "ENGINES"]
