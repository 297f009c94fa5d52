"""The index folder and its commit protocol: manifest.json, generation folders, leftovers of a crash.

    manifest.json            what the index is and which generation is current: the commit point
    g000007/index.faiss      the vectors (FAISS's own format) of generation 7
    g000007/chunks.jsonl     one chunk record per line
    .lock                    held (flock) by the one ingest allowed at a time
    .manifest.json.*.tmp     a manifest being written (temp file + rename); stale once no ingest holds .lock

An ingest, holding .lock from first read to last write, takes every decision from the manifest it read under
the lock, then:

    1. removes leftovers: temp files, and generation folders that the committed manifest does not name
    2. writes a new generation folder and fsyncs it
    3. replaces manifest.json atomically: the commit point
    4. removes the old generation folder

A crash (even SIGKILL) at any step leaves manifest.json naming a complete generation, or, during a first
ingest, no manifest.json and only names of this list: the next ingest recognizes the folder as rung's own and
starts again. Readers take no lock; one that loses its generation to step 4 reads the manifest again.

Fault injection, for the crash tests only: RUNG_RAG_KILL_AT=<one of KILL_POINTS> makes the ingest SIGKILL
itself at that point. Unset (always, outside tests), kill_point() does nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

from rung.core.errors import RungError
from rung.core.fileio import MAX_TEXT_BYTES, read_text, short

FORMAT = "rung-rag-index"
FORMAT_VERSION = 1
INDEX_TYPES = ("auto", "flat", "hnsw")
GEN = re.compile(r"^g(\d{6,})$")
GEN_FILES = ("index.faiss", "chunks.jsonl")
TEMP = re.compile(r"^\.(manifest\.json|index\.faiss|chunks\.jsonl)\.[A-Za-z0-9_]+\.tmp$")
MAX_MANIFEST_BYTES = MAX_TEXT_BYTES
# Every point where an ingest can be killed between two writes (the renames themselves are tested with strace).
KILL_POINTS = ("locked", "generation_dir", "index_written", "before_manifest", "after_manifest")


def kill_point(name: str) -> None:
    """SIGKILL this process here when RUNG_RAG_KILL_AT names this point (crash tests); otherwise nothing."""
    if os.environ.get("RUNG_RAG_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class DamagedIndex(RungError):
    """manifest.json (or a file it names) exists but cannot be used; `--rebuild` may replace it."""


def rebuild_hint(index_dir: Path) -> str:
    return f"rebuild the index with `rung rag index SOURCES --index {index_dir} --rebuild`"


# --------------------------------------------------------------------------------------------- the manifest

_REQUIRED = {"generation": int, "generation_dir": str, "model": str, "dim": int, "index_type": str,
             "chunker": dict, "counts": dict, "files": dict}
_OPTIONAL = {"sources": list, "skipped": dict, "hnsw": dict, "index_type_setting": str, "store": str}


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def manifest_problems(m: dict[str, Any]) -> list[str]:
    """What is wrong with a manifest's fields (the ones rung reads), every problem at once."""
    # A database index (rag/pg_store.py) has no generation folder: its generations are transactions.
    in_folder = m.get("store", "folder") == "folder"
    required = {k: v for k, v in _REQUIRED.items() if in_folder or k != "generation_dir"}
    problems = [f"no {key!r}" for key in required if key not in m]
    problems += [f"{key!r} is {short(m[key], 40)}, not {kind.__name__}" for key, kind in {**_REQUIRED, **_OPTIONAL}.items()
                 if key in m and not _is(m[key], kind)]
    if problems:
        return problems
    if in_folder and not GEN.match(m["generation_dir"]):
        problems.append(f"generation_dir {short(m['generation_dir'], 60)} points outside the index folder "
                        "(it must name one of its gNNNNNN folders)")
    if m["generation"] < 1 or m["dim"] < 1:
        problems.append("generation and dim must be 1 or more")
    if m["index_type"] not in INDEX_TYPES[1:] or m.get("index_type_setting", "auto") not in INDEX_TYPES:
        problems.append(f"index_type {short(m['index_type'], 20)} is not flat or hnsw")
    ef = m.get("hnsw", {}).get("efSearch", 1)
    if not _is(ef, int) or not 1 <= ef <= 1_000_000:
        problems.append(f"hnsw.efSearch {short(ef, 20)} is not a whole number from 1 to 1,000,000")
    chunker, counts = m["chunker"], m["counts"]
    if not all(_is(chunker.get(k), int) for k in ("chunk_tokens", "overlap")) or not isinstance(
            chunker.get("requested", {}), dict):
        problems.append("chunker needs whole-number chunk_tokens and overlap")
    if not _is(counts.get("chunks"), int):
        problems.append("counts.chunks is not a whole number")
    if not all(isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in m["files"].values()):
        problems.append("files: every entry needs a sha256")
    if not all(isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("reason"), str)
               for v in m.get("skipped", {}).values()):
        problems.append("skipped: every entry needs a sha256 and a reason")
    if not all(isinstance(s, str) for s in m.get("sources", [])):
        problems.append("sources must be paths")
    return problems


def read_manifest(index_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest, or None when DIR has none. A folder that is not a rung index, or one from a newer rung,
    is a RungError; a manifest that is unreadable, truncated or malformed is a DamagedIndex (one line each)."""
    index_dir = Path(index_dir)
    path = index_dir / "manifest.json"
    if not os.path.lexists(path):
        return None
    import json

    try:
        manifest = json.loads(read_text(path, what="index manifest", max_bytes=MAX_MANIFEST_BYTES))
    except RungError as error:
        raise DamagedIndex(f"{error.message}; {rebuild_hint(index_dir)}") from None
    except (json.JSONDecodeError, RecursionError) as error:
        where = f"line {error.lineno} column {error.colno}: {error.msg}" if isinstance(error, json.JSONDecodeError) \
            else "nested too deeply"
        raise DamagedIndex(f"{path}: not valid JSON ({where}; truncated or damaged?); "
                           f"{rebuild_hint(index_dir)}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RungError(f"{index_dir} is not a rung index (manifest.json has no format: {FORMAT}); "
                        "point --index at a folder made by `rung rag index`, or at a new folder")
    version = manifest.get("format_version", 0)
    if not _is(version, int):
        raise DamagedIndex(f"{path}: format_version {short(version, 20)} is not a number; {rebuild_hint(index_dir)}")
    if version > FORMAT_VERSION:
        raise RungError(f"{index_dir} was written by a newer rung (index format {version}); "
                        "upgrade rung or rebuild the index")
    problems = manifest_problems(manifest)
    if problems:
        raise DamagedIndex(f"{path}: damaged manifest: {'; '.join(problems[:4])}; {rebuild_hint(index_dir)}")
    return manifest


def generation_path(index_dir: Path, manifest: dict[str, Any]) -> Path:
    """The folder of the committed generation; refused unless it is a real folder directly inside DIR."""
    path = Path(index_dir) / manifest["generation_dir"]
    if path.is_symlink() or (path.exists() and path.resolve().parent != Path(index_dir).resolve()):
        raise DamagedIndex(f"{index_dir}/manifest.json: generation_dir {manifest['generation_dir']} leads outside the "
                           f"index folder (a symbolic link); refusing to follow it. {rebuild_hint(index_dir)}")
    return path


# --------------------------------------------------------------------------------------------- rung's own files

def is_own(entry: Path) -> bool:
    """Whether an entry of an index folder is one rung writes (see the module docstring)."""
    name = entry.name
    if entry.is_symlink():
        return False
    if name in (".lock", "manifest.json") or (TEMP.match(name) and entry.is_file()):
        return True
    if GEN.match(name) and entry.is_dir():
        try:
            return all(child.name in GEN_FILES or TEMP.match(child.name) for child in entry.iterdir())
        except OSError:
            return False
    return False


def foreign_entries(index_dir: Path) -> list[str]:
    """Names in DIR that rung did not write (empty for a new folder, or one a killed first ingest left)."""
    return sorted(entry.name for entry in Path(index_dir).iterdir() if not is_own(entry))


def remove_leftovers(index_dir: Path, keep: str | None) -> int:
    """Remove temp files and every generation folder except `keep` (the committed one). Only called under
    the lock, so nothing removed here can be another ingest's work in progress. Links are removed, not followed."""
    removed = 0
    for entry in Path(index_dir).iterdir():
        if entry.name == keep or not (GEN.match(entry.name) or TEMP.match(entry.name)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            try:
                entry.unlink()
            except FileNotFoundError:
                pass
        removed += 1
    return removed


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
