"""What keeps `rung serve` honest about the server it started (cli/serve.py uses each):

    port_problem(host, port)   a busy port refused before anything starts (another server would answer the
                               self-test and rung would report it as its own)
    http_serves(url, model)    the self-test counts only if /models names the model rung started
    death_signal_setter()      the child is SIGKILLed by the kernel when rung dies, however it dies
    clean_stale_merges()       merged-model folders and default logs of an earlier `rung serve` go at the next
                               start
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Callable

# + "<pid>-": a merged model folder, a default log file; those of a rung that no longer runs go at the next start
MERGED_PREFIX = "rung-serve-merged-"
LOG_PREFIX = "rung-serve-log-"


def death_signal_setter() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGKILL the server when rung's process dies, however it dies
    (Linux prctl PR_SET_PDEATHSIG); None where there is no prctl.

    libc is loaded here, in rung, not in the child: between fork and exec only async-signal-safe work is
    safe, and importing ctypes or dlopen-ing there can deadlock. SIGKILL, not SIGTERM: the signal fires only
    once rung is gone (the ordinary exit paths have already stopped the server with SIGTERM, a grace period,
    then SIGKILL to its group), so no one is left to wait for a graceful stop, and a server already slow on
    the forwarded SIGTERM would ignore a second one and live on as an orphan. If rung died before prctl ran,
    the parent is already init: the child exits at once instead of serving unsupervised."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        if os.getppid() != parent:
            os._exit(1)

    return set_death_signal


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port (in use, not an address here), or None. Bound with
    SO_REUSEADDR as servers bind, so a port in TIME_WAIT is free and one with a listener is not."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, ValueError):
        return f"--host {host}: not an address of this machine"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return (f"--port {port}: {host}:{port} is already in use by another process: stop it, choose "
                        "another port, or pass --port 0 for a free one")
            if error.errno == errno.EACCES:
                return f"--port {port}: permission denied (ports below 1024 need root): choose a port above 1023"
            return f"--host {host} --port {port}: cannot listen there ({error.strerror or error})"
    return None


def http_serves(base_url: str, model: str, timeout: float = 5.0) -> bool:
    """Whether the server at base_url lists `model` at /models: the answer came from the server rung started
    (another server on a reused port would list its own models)."""
    import urllib.request

    request = urllib.request.Request(f"{base_url}/models", headers={"Authorization": "Bearer EMPTY"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            listing = json.loads(response.read(1 << 20).decode("utf-8", "replace"))
    except (OSError, ValueError):
        return False
    data = listing.get("data") if isinstance(listing, dict) else None
    return isinstance(data, list) and any(isinstance(m, dict) and m.get("id") == model for m in data)


def clean_stale_merges(folder: str | None = None) -> list[Path]:
    """Remove the merged-model folders and default log files of a `rung serve` that no longer runs (killed,
    or stopped earlier: a log outlives its run so the user can read it, until the next start)."""
    import shutil
    import tempfile

    removed = []
    root = Path(folder or tempfile.gettempdir())
    for prefix in (MERGED_PREFIX, LOG_PREFIX):
        for path in root.glob(prefix + "*"):
            pid = path.name[len(prefix):].split("-", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid() or path.is_symlink() or _running(int(pid)):
                continue
            if path.is_dir() and prefix == MERGED_PREFIX:
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_file() and prefix == LOG_PREFIX:
                path.unlink(missing_ok=True)
            else:
                continue
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
