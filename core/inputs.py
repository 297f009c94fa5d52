"""What a command is given, checked before it writes a byte: input paths by kind, model specs, output folders.

Each check returns problem lines and never raises, so a command lists every problem at once (RungError,
exit 2) and only then creates anything:

    input_problem(path, what)            a regular file (after symlinks): not missing, a folder, a FIFO or device
    source_problem(path, what)           a regular file or a folder (a corpus, documents to index)
    check_model_spec(spec, base, where)  builtin:NAME, a local model folder, a GGUF (header checked), or a hub
                                         id (cached, when offline)
    out_dir_problems(path, ...)          a folder rung may write: missing, empty, rung's own, or --resume/--overwrite
    fresh_output(path)                   removes the folder a command created when it fails before anything
                                         worth resuming (a checkpoint) is in it
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any, Iterator

from rung.core.errors import RungError, did_you_mean
from rung.core.fileio import check_regular_file, file_kind, os_error_text, read_yaml, short

RUN_MARKER = "resolved_config.yaml"   # what every `rung train` run folder holds (trainers/common.py)
MERGE_MARKER = "rung_merge.yaml"      # what `rung merge` writes beside the merged weights
LAUNCH_MARKER = "cpt_job.json"        # what `rung train cpt --gpus N` writes before it launches (trainers/cpt)


def input_problem(path: str | os.PathLike, what: str = "file", max_bytes: int | None = None) -> str | None:
    """None if `path` is a regular file (no larger than max_bytes); else one line saying what it is instead."""
    try:
        check_regular_file(path, what=what, max_bytes=max_bytes)
    except RungError as error:
        return error.message
    return None


def source_problem(path: str | os.PathLike, what: str = "path") -> str | None:
    """None if `path` is a regular file or a folder; a FIFO, device, socket, loop or missing path is a line."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"{path}: {what} does not exist"
    except OSError as error:
        return f"{path}: {what}: " + os_error_text(error, "read", path).split(": ", 1)[-1]
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return None
    return f"{path}: {what} is {file_kind(mode)}, not a file or a folder"


# ---------------------------------------------------------------------------------------------- models


def builtin_names() -> tuple[str, ...]:
    from rung.core.models import BUILTIN_MODELS

    return tuple(name.split(":", 1)[1] for name in BUILTIN_MODELS)


def check_model_spec(spec: Any, base_dir: Path, where: str, *, endpoint_ok: bool = False) -> tuple[Any, str | None]:
    """A model spec -> (spec with a relative folder made absolute, problem or None). Loads nothing.

    Relative folders are read from base_dir (a plan's folder; the working folder for `rung train`). A spec
    written as a path (./x, /x, a/b/c) that does not exist is a problem, not a hub id; a hub id that is not
    cached while HF_HUB_OFFLINE=1 is one too. `openai:NAME` (a model behind an endpoint) is accepted where
    endpoint_ok says the caller can ask one; elsewhere it is a problem saying so. A local folder's config and
    safetensors headers are checked (core/safetensors_check.py).
    """
    from rung.core.endpoint import ENDPOINT_PREFIX
    from rung.core.gguf_in import NAMED_MODELS, OLLAMA_PREFIX, gguf_source
    from rung.core.models import looks_like_path

    if not isinstance(spec, str) or not spec.strip():
        return spec, f"{where}: expected a model (hub id, local folder or builtin:tiny), got {short(spec)}"
    if spec.startswith(ENDPOINT_PREFIX):
        name = spec[len(ENDPOINT_PREFIX):].strip()
        if not name or not name.isprintable():
            return spec, f"{where}: {ENDPOINT_PREFIX}NAME needs the model's name at the endpoint, e.g. openai:gpt-4o-mini"
        if not endpoint_ok:
            return spec, (f"{where}: {short(spec, 60)} is a model behind an endpoint; this needs local weights "
                          "(a folder, a hub id or builtin:tiny)")
        return spec, None
    try:
        gguf = gguf_source(spec, base_dir)  # reads the header only: architecture and tensor types checked here
    except RungError as error:
        return spec, f"{where}: {error.message}"
    if gguf is not None:
        return (spec if spec.startswith(OLLAMA_PREFIX) or spec in NAMED_MODELS else str(gguf)), None
    if spec.startswith("builtin:"):
        names = builtin_names()
        name = spec.split(":", 1)[1]
        if name not in names:
            return spec, (f'{where}: unknown built-in model "{short(spec, 60)[1:-1]}"{did_you_mean(name, names)} '
                          f'(built-ins: {", ".join("builtin:" + n for n in names)})')
        return spec, None
    path = Path(spec).expanduser()
    candidate = path if path.is_absolute() else base_dir / path
    path_like = looks_like_path(spec)
    if candidate.exists() or (path_like and path.exists()):
        folder = candidate if candidate.exists() else path
        if not folder.is_dir() or not ((folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()):
            return spec, (f"{where}: {folder} is not a model folder (no config.json or adapter_config.json) "
                          "and no GGUF (no .gguf file)")
        from rung.core.safetensors_check import model_folder_problems

        damaged = model_folder_problems(folder)  # headers and config types only: cheap, before any load
        if damaged:
            return spec, f"{where}: " + damaged[0] + (f" (and {len(damaged) - 1} more problems)" if len(damaged) > 1
                                                      else "")
        return str(folder.resolve()), None
    if path_like:
        return spec, f"{where}: model path {candidate} does not exist"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(spec, "config.json")
        except Exception:  # an id huggingface_hub rejects
            cached = None
        if not isinstance(cached, str):
            shown = short(spec, 100)[1:-1]
            return spec, (f'{where}: hub model "{shown}" is not in the local cache and HF_HUB_OFFLINE=1: '
                          f"download it first (huggingface-cli download {shown}) or name a local folder")
    return spec, None


# ---------------------------------------------------------------------------------------------- outputs


def made_by_rung(folder: Path, marker: str = RUN_MARKER) -> bool:
    """Whether rung wrote this folder: its marker file is there (for a run, a resolved_config.yaml holding
    rung's `settings` mapping, or the job file a `rung train cpt` launch writes first, which the other nodes
    of a multi-node run find before the workers write resolved_config.yaml)."""
    if marker == RUN_MARKER and input_problem(folder / LAUNCH_MARKER) is None:
        return True
    path = folder / marker
    if input_problem(path, max_bytes=4 * 1024 * 1024):
        return False
    if marker != RUN_MARKER:
        return True
    try:
        content = read_yaml(path, max_bytes=4 * 1024 * 1024)
    except RungError:
        return False
    return isinstance(content, dict) and isinstance(content.get("settings"), dict)


def out_dir_problems(path: str | os.PathLike, *, flag: str = "--out", resume: bool = False,
                     overwrite: bool = False, marker: str = RUN_MARKER) -> list[str]:
    """Why rung may not write into `path`, or []: missing (its nearest existing parent must be a writable
    folder), empty, rung's own (`marker`), or a non-empty folder the user vouches for with --resume or
    --overwrite. A file, a FIFO, a symlink loop or a read-only place is named before anything is written."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        return [f"{flag} {path}: " + os_error_text(error, "use", path).split(": ", 1)[-1]]
    if mode is None:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            return [f"{flag} {path}: cannot create it: {parent} is a file, not a folder"]
        if not os.access(parent, os.W_OK | os.X_OK):
            return [f"{flag} {path}: cannot create it: {parent} is not writable"]
        return []
    if not stat.S_ISDIR(mode):
        kind = "a file" if stat.S_ISREG(mode) else file_kind(mode)
        return [f"{flag} {path} is {kind}, not a folder"]
    if not os.access(path, os.W_OK | os.X_OK):
        return [f"{flag} {path}: the folder is not writable"]
    try:
        empty = not any(os.scandir(path))
    except OSError as error:
        return [f"{flag} {path}: " + os_error_text(error, "list", path).split(": ", 1)[-1]]
    if empty or resume or overwrite or made_by_rung(path, marker):
        return []
    return [f"{flag} {path} is not empty and rung did not write it (no {marker}): choose a new folder, or pass "
            "--overwrite to write into it anyway"]


@contextlib.contextmanager
def fresh_output(path: str | os.PathLike) -> Iterator[None]:
    """Around a command that writes `path`: if the folder did not exist before and the command fails (or is
    interrupted) before a checkpoint is saved in it, remove it, so a failed run leaves nothing half-written.
    A folder that existed, or holds checkpoints/checkpoint-N (something `--resume` continues), stays."""
    import shutil

    path = Path(path).expanduser()
    existed = os.path.lexists(path)
    try:
        yield
    except BaseException:
        keep = existed or not path.is_dir() or path.is_symlink() or any((path / "checkpoints").glob("checkpoint-*"))
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
        raise
