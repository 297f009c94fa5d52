"""Writes into an output folder stay inside it: no planted symbolic link is followed.

A folder a command writes into again (a probe resuming, a gate rerun) may have been prepared by someone else:
`answers.jsonl -> ~/.bashrc` would have rung append to a file the user never named. Atomic writes
(core/fileio.py) replace a link rather than follow it; appends and folders reused in place are checked here:

    link_problems(folder, names)   the names rung writes in `folder` that are symbolic links (and --out itself)
    open_append(path)              append to a regular file, refusing a link (O_NOFOLLOW) or anything else
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Iterable

from rung.core.errors import RungError
from rung.core.fileio import file_kind, os_error_text


def link_problems(folder: str | os.PathLike, names: Iterable[str], *, flag: str = "--out") -> list[str]:
    """Problems for `folder` itself, or any of `names` inside it, being a symbolic link (the target is not
    read, and not named: it may be anything)."""
    folder = Path(folder).expanduser()
    if folder.is_symlink():
        return [f"{flag} {folder} is a symbolic link: name the folder itself, so rung writes only where you said"]
    return [f"{flag} {folder}: {name} is a symbolic link; rung does not write through links planted in its "
            "output folder: remove it or choose another folder" for name in names if (folder / name).is_symlink()]


def open_append(path: str | os.PathLike) -> IO[str]:
    """`path` opened for appending UTF-8 text, created if missing; a symbolic link, a FIFO or a device there
    is one RungError line, and nothing is written."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as error:
        if path.is_symlink():
            raise RungError(f"{path} is a symbolic link; rung does not append through it") from None
        raise RungError(os_error_text(error, "append to", path)) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise RungError(f"{path} is {file_kind(mode)}, not a regular file; rung does not append to it")
    return os.fdopen(fd, "a", encoding="utf-8")
