"""Read the files `rung rag index` is given: find them, hash them, turn each into text sections.

Every file ends up either read (one or more `Section`s) or skipped with a reason the summary counts:
binary, not UTF-8, unreadable, empty, PDF without a text layer, unsupported type. Nothing here crashes on
bad input, and nothing here imports torch, faiss or langchain.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

# extension -> format
FORMATS = {
    ".txt": "text", ".text": "text",
    ".md": "markdown", ".markdown": "markdown",
    ".rst": "rst",
    ".html": "html", ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
}


@dataclass
class SourceFile:
    """One file to index. `source` is what chunks, eval files and answers call it."""

    source: str          # path relative to the folder that was indexed, or the file name
    path: Path           # where it is on disk
    data: bytes = b""
    sha256: str = ""
    skip: str | None = None  # reason, when it cannot be indexed
    skip_known: bool = False  # skipped last time with the same bytes (not parsed again)


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

def find_files(sources: list[str | os.PathLike]) -> tuple[list[SourceFile], list[str]]:
    """Expand files and folders into SourceFiles (not yet read). Returns (files, problems).

    A folder's files are named relative to it; with several sources, a folder's files are prefixed with the
    folder's name so two README.md files cannot collide. Hidden files and folders are left out.
    """
    files: list[SourceFile] = []
    problems: list[str] = []
    several = len(sources) > 1
    for raw in sources:
        root = Path(raw).expanduser()
        if root.is_dir():
            prefix = root.resolve().name + "/" if several else ""
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.startswith("."):
                        continue
                    path = Path(dirpath) / name
                    rel = path.relative_to(root).as_posix()
                    files.append(SourceFile(source=prefix + rel, path=path))
        elif root.exists():
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


def read_and_hash(f: SourceFile) -> SourceFile:
    """Read the bytes and hash them; sets `skip` for unsupported types and unreadable files."""
    suffix = f.path.suffix.lower()
    if suffix not in FORMATS:
        f.skip = f"unsupported type ({suffix or 'no extension'})"
        return f
    try:
        f.data = f.path.read_bytes()
    except OSError as error:
        f.skip = f"unreadable ({error.strerror or type(error).__name__})"
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
    sections = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not record["text"].strip():
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


# --------------------------------------------------------------------------------------------- HTML

_SKIP_TAGS = {"script", "style", "head", "noscript", "template", "svg", "iframe"}
_BLOCK_TAGS = {"p", "div", "section", "article", "main", "header", "footer", "aside", "nav", "ul", "ol", "li",
               "table", "tr", "pre", "blockquote", "hr", "br", "dl", "dt", "dd", "figure", "figcaption", "form",
               "h1", "h2", "h3", "h4", "h5", "h6", "title", "body", "html"}


class _TextExtractor(HTMLParser):
    """HTML -> markdown-like text (headings as `#` lines) with the source line of every output line."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines: list[tuple[str, int]] = []
        self.current: list[str] = []
        self.current_line = 0
        self.skip_depth = 0
        self.pre = 0
        self.title: str | None = None
        self.in_title = False

    def _flush(self):
        text = "".join(self.current)
        text = text if self.pre else re.sub(r"[ \t\f\v]+", " ", text).strip()
        if text:
            self.lines.append((text, self.current_line))
        self.current = []

    def _blank(self):
        self._flush()
        if self.lines and self.lines[-1][0] != "":
            self.lines.append(("", self.getpos()[0]))

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
            return
        if tag in _SKIP_TAGS:
            self.skip_depth += 1
            return
        if tag in _BLOCK_TAGS:
            self._blank() if tag in {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table", "ul", "ol"} else self._flush()
        if tag == "pre":
            self.pre += 1
        if len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
            self._add("#" * int(tag[1]) + " ")
        elif tag == "li":
            self._add("- ")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
            return
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in _BLOCK_TAGS:
            self._blank() if tag in {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table", "ul", "ol"} else self._flush()

    def _add(self, text: str):
        if not self.current:
            self.current_line = self.getpos()[0]
        self.current.append(text)

    def handle_data(self, data):
        if self.in_title:
            self.title = ((self.title or "") + data).strip() or None
            return
        if self.skip_depth:
            return
        if self.pre:
            parts = data.split("\n")
            line = self.getpos()[0]
            for i, part in enumerate(parts):
                if i:
                    self._flush()
                    self.current_line = line + i
                if part:
                    if not self.current:
                        self.current_line = line + i
                    self.current.append(part)
            return
        if data.strip() or self.current:
            if not self.current:
                self.current_line = self.getpos()[0] + data[: len(data) - len(data.lstrip())].count("\n")
            self.current.append(data.replace("\n", " "))


def html_to_text(html: str) -> tuple[str, list[int], str | None]:
    """Returns (text, source line for each text line, <title>)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    parser._flush()
    lines = parser.lines
    while lines and lines[-1][0] == "":
        lines.pop()
    while lines and lines[0][0] == "":
        lines.pop(0)
    return "\n".join(t for t, _ in lines), [n for _, n in lines], parser.title


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
