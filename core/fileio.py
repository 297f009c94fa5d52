"""Small, shared file helpers: bounded reading (regular files only, size limits, YAML with line/column errors and
an alias budget), one-line OSError messages, and atomic writes (temp file + rename)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from rung.core.errors import RungError


# Inputs are read whole: a limit keeps a wrong path (a log, a dataset dump, /dev/zero) from filling memory.
MAX_TEXT_BYTES = 512 * 1024 * 1024
MAX_YAML_BYTES = 16 * 1024 * 1024
# A YAML file whose aliases expand past this many values is refused (a "billion laughs" bomb): its objects
# share references, so loading is cheap, but anything that walks or prints them would never finish.
MAX_YAML_VALUES = 1_000_000
ERRNO_TEXT = {errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on the device",
              errno.ELOOP: "too many symbolic links (a loop?)", errno.ENOTDIR: "a part of the path is not a folder",
              errno.EEXIST: "already exists", errno.EISDIR: "is a folder", errno.EACCES: "permission denied",
              errno.ENOENT: "no such file or folder", errno.EPERM: "operation not permitted",
              errno.ENAMETOOLONG: "name too long", errno.EDQUOT: "disk quota exceeded"}


def short(value: Any, limit: int = 80) -> str:
    """repr() for a message, cut to `limit` characters: a huge or deeply shared value never floods a line."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = limit
    shortener.maxlist = shortener.maxdict = shortener.maxtuple = shortener.maxset = 6
    shortener.maxlevel = 3
    text = shortener.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: Any, limit: int = 60) -> str:
    """A user's word as typed when it is short, printable text; else short()'s cut repr (for "quoted" words)."""
    return value if isinstance(value, str) and value.isprintable() and len(value) <= limit else short(value, limit)


def os_error_text(error: OSError, operation: str, path: str | os.PathLike | None = None) -> str:
    """One line for an OSError: the operation, the path and what went wrong in words."""
    where = path if path is not None else (error.filename or "")
    reason = ERRNO_TEXT.get(error.errno or 0) or error.strerror or type(error).__name__
    return f"cannot {operation} {where}: {reason}".replace("  ", " ")


def storage_full(error: BaseException) -> bool:
    """A write failed for want of space: ENOSPC/EDQUOT as an OSError, or in the words of a library that wraps
    it in its own exception (safetensors' SafetensorError says "os error 28", torch "PytorchStreamWriter")."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(error)
    return any(words in text for words in ("No space left", "StorageFull", "os error 28", "Disk quota exceeded",
                                           "os error 122"))


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular_file(path: str | os.PathLike, *, what: str = "file", max_bytes: int | None = None) -> Path:
    """The path, if it names a regular file (after symlinks) no larger than max_bytes; else one RungError line.

    Checked before anything opens it: a FIFO would block the read forever and a device never ends."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise RungError(f"{path}: {what} not found") from None
    except OSError as error:
        raise RungError(f"{path}: {what}: " + os_error_text(error, "read", path).split(": ", 1)[-1]) from None
    if not stat.S_ISREG(info.st_mode):
        raise RungError(f"{path}: {what} is {file_kind(info.st_mode)}, not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise RungError(f"{path}: {what} is {info.st_size / 1e6:,.1f} MB, over rung's limit of "
                        f"{max_bytes / 1e6:,.0f} MB for it")
    return path


def read_bytes(path: str | os.PathLike, *, what: str = "file", max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    """A regular file's bytes, at most max_bytes (checked before and while reading)."""
    path = check_regular_file(path, what=what, max_bytes=max_bytes)
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, open() still returns at once
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise RungError(f"{path}: " + os_error_text(error, f"read {what}", "").rstrip(": ")) from None
    if len(data) > max_bytes:
        raise RungError(f"{path}: {what} is over rung's limit of {max_bytes / 1e6:,.0f} MB for it")
    return data


def read_text(path: str | os.PathLike, *, what: str = "file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A UTF-8 text file's contents; missing, a folder, a FIFO or device, too large, unreadable or not UTF-8
    becomes one RungError line naming the path."""
    path = Path(path)
    data = read_bytes(path, what=what, max_bytes=max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RungError(f"{path}: {what} is not UTF-8 text ({error.reason} at byte {error.start})") from None


def count_values(value: Any, budget: int) -> int:
    """How many values a loaded YAML document holds, shared (aliased) ones counted each time they are
    reached; stops counting past `budget`."""
    seen, stack = 0, [value]
    while stack and seen <= budget:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return seen


def read_yaml(path: str | os.PathLike, *, what: str = "file", max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Parse a YAML file (safe loader); malformed YAML names file, line and column; a file that is too large
    or whose aliases expand past MAX_YAML_VALUES values is refused."""
    path = Path(path)
    text = read_text(path, what=what, max_bytes=max_bytes)
    try:
        # libyaml's safe loader when PyYAML has it: several times faster, and `rung advise` reads YAML at start-up
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RungError(f"{where}: malformed YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise RungError(f"{path}: malformed YAML: {short(str(error), 200)}") from None
    except RecursionError:
        raise RungError(f"{path}: YAML nested too deeply") from None
    if "*" in text and count_values(data, MAX_YAML_VALUES) > MAX_YAML_VALUES:
        raise RungError(f"{path}: YAML aliases expand to more than {MAX_YAML_VALUES:,} values; refusing it "
                        "(an alias bomb?)")
    return data


def make_dir(path: str | os.PathLike, *, what: str = "folder") -> bool:
    """Create a folder and its parents; True when this call created it. An OSError (read-only file system,
    a file in the way, a symlink loop) becomes one RungError line naming the folder and the operation."""
    path = Path(path)
    if path.is_dir():
        return False
    try:
        path.mkdir(parents=True)
    except FileExistsError as error:
        if path.is_dir():  # made by someone else in between
            return False
        if os.path.lexists(path):
            try:
                path.stat()
            except OSError as link_error:  # a dangling link or a symlink loop
                raise RungError(os_error_text(link_error, f"create {what}", path)) from None
            raise RungError(f"cannot create {what} {path}: a file of that name is in the way") from None
        raise RungError(os_error_text(error, f"create {what}", path)) from None
    except OSError as error:
        raise RungError(os_error_text(error, f"create {what}", path)) from None
    return True


def staging_dir(out_dir: Path, doing: str) -> Path:
    """A new empty folder beside out_dir (.NAME.DOING-XXXX), on the same file system so the finished result can be
    renamed into place; its parents are made. One RungError line when it cannot be created."""
    import tempfile

    make_dir(out_dir.parent, what="folder")
    try:
        return Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.{doing}-"))
    except OSError as error:
        raise RungError(os_error_text(error, "create a folder in", out_dir.parent)) from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, then rename: readers never see half a file.
    An OSError (a full disk, a read-only file system, a folder in the way) is one RungError line."""
    import tempfile  # imported here: `rung advise` never writes, and start-up time matters there

    path = Path(path)
    make_dir(path.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        # mkstemp makes 0600 files; give the result the mode a plain open() would (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(error, OSError):
            raise RungError(os_error_text(error, "write", path)) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_yaml(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    import json

    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
