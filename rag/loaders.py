"""Read the files `rung rag index` is given: find them, hash them, turn each into text sections.

Every file ends up either read (one or more `Section`s) or skipped with a reason the summary counts:
binary, not UTF-8, unreadable, empty, PDF without a text layer, unsupported type, not a regular file (a FIFO
would block the read, a device never ends), too large, or a symbolic link that leaves the folder being indexed
(followed only when asked). Bad lines of a JSONL corpus are counted, with their line numbers. Named directly, a
FIFO, device or too-large file is refused instead. Nothing here crashes on bad input, and nothing here imports
torch, faiss or langchain.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from rung.core.errors import RungError
from rung.core.fileio import ERRNO_TEXT, MAX_TEXT_BYTES, file_kind, read_bytes
from rung.core.rows import jsonl_records
from rung.rag.html_text import html_to_text

# extension -> format
FORMATS = {
    ".txt": "text", ".text": "text",
    ".md": "markdown", ".markdown": "markdown",
    ".rst": "rst",
    ".html": "html", ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
}
# One source file is read whole (and held until it is chunked): larger ones are skipped, or refused when named.
MAX_SOURCE_BYTES = MAX_TEXT_BYTES
OUTSIDE = "symbolic link out of the indexed folder (--follow-symlinks follows it)"


@dataclass
class SourceFile:
    """One file to index. `source` is what chunks, eval files and answers call it."""

    source: str          # path relative to the folder that was indexed, or the file name
    path: Path           # where it is on disk
    data: bytes = b""
    sha256: str = ""
    skip: str | None = None  # reason, when it cannot be indexed
    skip_known: bool = False  # skipped last time with the same bytes (not parsed again)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # JSONL: (line, what is wrong), records left out


@dataclass
class Section:
    """A run of text from one file: the whole file, one PDF page, or one JSONL record."""

    text: str
    doc: str                   # the document eval collapses chunks to: the source, or a JSONL record id
    first_line: int = 1        # line of the file where `text` starts
    page: int | None = None    # PDF page (1-based)
    title: str | None = None   # JSONL title / HTML <title>
    fmt: str = "text"          # markdown | rst | text (html is converted to markdown-like text)
    line_map: list[int] | None = field(default=None, repr=False)  # html: source line of each text line


# --------------------------------------------------------------------------------------------- finding files

def find_files(sources: list[str | os.PathLike], *, follow_symlinks: bool = False,
               exclude: tuple[str | os.PathLike, ...] = ()) -> tuple[list[SourceFile], list[str]]:
    """Expand files and folders into SourceFiles (not yet read). Returns (files, problems).

    A folder's files are named relative to it; with several sources, a folder's files are prefixed with the
    folder's name so two README.md files cannot collide. Hidden files and folders are left out, and so are the
    folders in `exclude` (the index itself). Symbolic links found in a folder are followed only while they stay
    inside it, unless follow_symlinks; a source named directly is always followed, but must be a regular file.
    """
    files: list[SourceFile] = []
    problems: list[str] = []
    several = len(sources) > 1
    excluded = {os.path.realpath(p) for p in exclude}
    for raw in sources:
        root = Path(raw).expanduser()
        if root.is_dir():
            prefix = root.resolve().name + "/" if several else ""
            files.extend(_walk(root, prefix, follow_symlinks, excluded))
        elif root.exists():
            problem = _named_file_problem(root)
            if problem:
                problems.append(problem)
            else:
                files.append(SourceFile(source=root.name, path=root))
        else:
            problems.append(f"{raw}: no such file or folder")
    seen: dict[str, Path] = {}
    for f in files:
        if f.source in seen and seen[f.source].resolve() != f.path.resolve():
            problems.append(f"two files would both be called {f.source!r} ({seen[f.source]} and {f.path}); "
                            "index their folders instead of the files one by one")
        seen.setdefault(f.source, f.path)
    unique = {f.source: f for f in files}
    return list(unique.values()), problems


def named_problems(sources: list[str | os.PathLike]) -> list[str]:
    """Problems with the sources themselves (missing, a FIFO or device, too large), before anything is walked."""
    problems = []
    for raw in sources:
        root = Path(raw).expanduser()
        problem = None if root.is_dir() else _named_file_problem(root) if root.exists() else \
            f"{raw}: no such file or folder"
        if problem:
            problems.append(problem)
    return problems


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def _walk(root: Path, prefix: str, follow: bool, excluded: set[str]) -> list[SourceFile]:
    top = os.path.realpath(root)
    out: list[SourceFile] = []
    visited = {top}

    def name(path: Path) -> str:
        return prefix + path.relative_to(root).as_posix()

    def unreadable(error: OSError) -> None:  # os.walk's onerror: report the folder instead of leaving it out
        folder = Path(error.filename)
        if folder != root:
            out.append(SourceFile(source=name(folder) + "/", path=folder, skip=f"unreadable folder ({_reason(error)})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=follow):
        keep = []
        for d in sorted(dirnames):
            path = Path(dirpath) / d
            real = os.path.realpath(path)
            if d.startswith(".") or real in excluded or real in visited:
                continue  # hidden, the index itself, or a folder already walked (a link loop)
            if path.is_symlink() and not follow:
                if not _inside(real, top):
                    out.append(SourceFile(source=name(path) + "/", path=path, skip=OUTSIDE))
                continue  # a link inside the tree: its files are indexed under their own path
            visited.add(real)
            keep.append(d)
        dirnames[:] = keep
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            path = Path(dirpath) / filename
            outside = not follow and not _inside(os.path.realpath(path), top)
            out.append(SourceFile(source=name(path), path=path, skip=OUTSIDE if outside else None))
    return out


def _reason(error: OSError) -> str:
    return ERRNO_TEXT.get(error.errno or 0) or error.strerror or type(error).__name__


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _named_file_problem(path: Path) -> str | None:
    """Why a file named as a source cannot be indexed (None: it can be read)."""
    try:
        info = path.stat()
    except OSError as error:
        return f"{path}: cannot read it: {_reason(error)}"
    if not stat.S_ISREG(info.st_mode):
        return f"{path}: is {file_kind(info.st_mode)}, not a file or folder that can be indexed"
    if info.st_size > MAX_SOURCE_BYTES:
        return f"{path}: {_mb(info.st_size)}, over the {_mb(MAX_SOURCE_BYTES)} limit for one source file; split it"
    return None


def read_and_hash(f: SourceFile) -> SourceFile:
    """Read the bytes and hash them; sets `skip` for unsupported types and files that cannot or must not be read."""
    if f.skip:
        return f
    try:
        info = f.path.stat()
    except OSError as error:
        f.skip = f"unreadable ({_reason(error)})"
        return f
    if not stat.S_ISREG(info.st_mode):
        f.skip = f"{file_kind(info.st_mode)}, not a regular file"
        return f
    suffix = f.path.suffix.lower()
    if suffix not in FORMATS:
        f.skip = f"unsupported type ({suffix or 'no extension'})"
        return f
    if info.st_size > MAX_SOURCE_BYTES:
        f.skip = f"too large ({_mb(info.st_size)}; the limit is {_mb(MAX_SOURCE_BYTES)})"
        return f
    try:  # the read is sized to the file, and refuses one swapped for a FIFO or grown past the limit meanwhile
        f.data = read_bytes(f.path, what="source file", max_bytes=min(MAX_SOURCE_BYTES, info.st_size + 1024 * 1024))
    except RungError as error:
        f.skip = f"unreadable ({error.message.rsplit(': ', 1)[-1]})"
        return f
    f.sha256 = hashlib.sha256(f.data).hexdigest()
    return f


# --------------------------------------------------------------------------------------------- parsing

def parse(f: SourceFile) -> list[Section]:
    """Turn a read file into sections; sets `f.skip` (and returns []) when there is no usable text."""
    fmt = FORMATS[f.path.suffix.lower()]
    if fmt == "pdf":
        return _parse_pdf(f)
    if b"\0" in f.data[:8192]:
        f.skip = "binary"
        return []
    try:
        text = f.data.decode("utf-8-sig")
    except UnicodeDecodeError:
        f.skip = "not UTF-8 text"
        return []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        f.skip = "empty"
        return []
    if fmt == "jsonl":
        return _parse_jsonl(f, text)
    if fmt == "html":
        converted, line_map, title = html_to_text(text)
        if not converted.strip():
            f.skip = "empty (no text in the HTML)"
            return []
        return [Section(converted, doc=f.source, fmt="markdown", title=title, line_map=line_map)]
    return [Section(text, doc=f.source, fmt=fmt)]


def _parse_jsonl(f: SourceFile, text: str) -> list[Section]:
    """One section per record with a "text" string; every other non-blank line goes to f.bad_lines."""
    sections = []
    for lineno, record, bad in jsonl_records(text):
        if bad:
            f.bad_lines.append((lineno, f"not JSON ({bad.reason})"))
            continue
        problem = ("not a JSON object" if not isinstance(record, dict) else
                   'no "text" string' if not isinstance(record.get("text"), str) else
                   'empty "text"' if not record["text"].strip() else None)
        if problem:
            f.bad_lines.append((lineno, problem))
            continue
        doc_id = record.get("_id", record.get("id"))
        doc = str(doc_id) if doc_id is not None else f"{f.source}#{lineno}"
        title = record.get("title") if isinstance(record.get("title"), str) else None
        sections.append(Section(record["text"], doc=doc, first_line=lineno, title=title or None, fmt="text"))
    if not sections:
        f.skip = "no JSON lines with a text field"
    return sections


def _parse_pdf(f: SourceFile) -> list[Section]:
    try:
        import io

        from pypdf import PdfReader
    except ImportError:
        f.skip = "PDF support not installed (pip install 'rung[pdf]')"
        return []
    try:
        reader = PdfReader(io.BytesIO(f.data))
        if reader.is_encrypted and not reader.decrypt(""):
            f.skip = "encrypted PDF"
            return []
        pages = [(number, page.extract_text() or "") for number, page in enumerate(reader.pages, start=1)]
    except Exception as error:  # pypdf raises many types on damaged files
        f.skip = f"unreadable PDF ({type(error).__name__})"
        return []
    sections = [Section(t, doc=f.source, page=n, fmt="text") for n, t in pages if t.strip()]
    if not sections:
        f.skip = "PDF without a text layer"
    return sections


# --------------------------------------------------------------------------------------------- headings

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:._])\1{2,}\s*$")


def headings(text: str, fmt: str) -> list[tuple[int, str]]:
    """(0-based line index, heading trail "A > B") for every heading line, in order."""
    lines = text.split("\n")
    found: list[tuple[int, int, str]] = []  # (line, level, title)
    if fmt == "rst":
        levels: list[str] = []
        for i in range(1, len(lines)):
            underline, title = lines[i], lines[i - 1].strip()
            if title and _RST_UNDERLINE.match(underline) and len(underline.strip()) >= len(title) \
                    and not _RST_UNDERLINE.match(lines[i - 1]):
                char = underline.strip()[0]
                overlined = i >= 2 and lines[i - 2].strip() and lines[i - 2].strip()[0] == char \
                    and _RST_UNDERLINE.match(lines[i - 2])
                key = ("o" if overlined else "u") + char
                if key not in levels:
                    levels.append(key)
                found.append((i - 1, levels.index(key) + 1, title))
    else:
        fence = False
        for i, line in enumerate(lines):
            if line.lstrip().startswith(("```", "~~~")):
                fence = not fence
                continue
            if fence:
                continue
            match = _MD_HEADING.match(line)
            if match:
                found.append((i, len(match.group(1)), match.group(2)))
            elif i > 0 and lines[i - 1].strip() and re.match(r"^(=+|-+)\s*$", line) and len(line.strip()) >= 3 \
                    and not _MD_HEADING.match(lines[i - 1]):
                found.append((i - 1, 1 if line.strip()[0] == "=" else 2, lines[i - 1].strip()))
    trail: list[tuple[int, str]] = []
    out = []
    for index, level, title in found:
        trail = [(lv, t) for lv, t in trail if lv < level] + [(level, title)]
        out.append((index, " > ".join(t for _, t in trail)))
    return out
