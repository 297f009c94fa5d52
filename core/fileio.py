"""Small, shared file helpers: YAML with line/column errors, and atomic writes (temp file + rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from rung.core.errors import RungError


def read_text(path: str | os.PathLike, *, what: str = "file") -> str:
    """A UTF-8 text file's contents; missing, a folder, unreadable or not UTF-8 becomes one RungError line."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RungError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise RungError(f"{path}: is a folder, expected a {what}") from None
    except PermissionError as error:
        raise RungError(f"{path}: cannot read {what}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise RungError(f"{path}: {what} is not UTF-8 text ({error.reason} at byte {error.start})") from None


def read_yaml(path: str | os.PathLike, *, what: str = "file") -> Any:
    """Parse a YAML file; a missing file or malformed YAML becomes a RungError naming file, line and column."""
    path = Path(path)
    text = read_text(path, what=what)
    try:
        # libyaml's safe loader when PyYAML has it: several times faster, and `rung advise` reads YAML at start-up
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RungError(f"{where}: malformed YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise RungError(f"{path}: malformed YAML: {error}") from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, then rename: readers never see half a file."""
    import tempfile  # imported here: `rung advise` never writes, and start-up time matters there

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; give the result the mode a plain open() would (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_yaml(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    import json

    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
