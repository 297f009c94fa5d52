"""Helpers for the RAG tests: a small corpus, checks on the index folder and on a failed command's output."""

from __future__ import annotations

import json
from pathlib import Path


def write_docs(docs: Path, count: int = 4, tag: str = "") -> Path:
    """`count` short Markdown notes, one chunk each."""
    docs.mkdir(parents=True, exist_ok=True)
    topics = ["refunds", "invoices", "passwords", "webhooks", "exports", "seats", "tokens", "backups"]
    for i in range(count):
        topic = topics[i % len(topics)]
        (docs / f"note-{i}.md").write_text(f"# Note {i} about {topic}\n\nHow {topic} work, part {i}{tag}.\n")
    return docs


def temp_files(index_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(index_dir)) for p in Path(index_dir).rglob("*.tmp"))


def check_index(index_dir: Path, *, chunks: int | None = None) -> None:
    """A working index: it loads, vectors and chunks agree, no duplicate ids, one generation, no temp file."""
    from rung.rag.store import RagIndex, read_manifest

    manifest = read_manifest(index_dir)
    loaded = RagIndex.load(index_dir, load_model=False)
    lines = (index_dir / manifest["generation_dir"] / "chunks.jsonl").read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids)) == loaded.index.ntotal == len(loaded) == manifest["counts"]["chunks"]
    if chunks is not None:
        assert len(loaded) == chunks
    assert sorted(p.name for p in index_dir.iterdir() if p.name.startswith("g")) == [manifest["generation_dir"]]
    assert temp_files(index_dir) == []


def one_error_line(result) -> str:
    """The output of a command that failed cleanly: exit 2, `Error: ...` lines, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert errors, result.output
    return result.output


# --------------------------------------------------------------------------------------------- either store

def is_db(location) -> bool:
    return str(location).startswith("postgresql://")


def committed_manifest(location) -> dict | None:
    """The manifest serving now, read as a reader would (None: no index yet)."""
    from rung.rag.backend import is_url, parse_database_url
    from rung.rag.store import read_manifest

    if not is_url(str(location)):
        return read_manifest(location)
    from rung.rag.pg_store import _read_manifest, connect

    with connect(parse_database_url(location), vectors=False) as conn:
        return _read_manifest(conn, parse_database_url(location))


def stored_chunks(location) -> list[dict]:
    """Every chunk record the store holds, duplicates included (a folder's chunks.jsonl, a database's rows)."""
    from rung.rag.backend import is_url, parse_database_url

    manifest = committed_manifest(location)
    if not is_url(str(location)):
        lines = (Path(location) / manifest["generation_dir"] / "chunks.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]
    from rung.rag.pg_store import connect

    target = parse_database_url(location)
    with connect(target, vectors=False) as conn:
        return [r for (r,) in conn.execute(f"SELECT record FROM {target.table}_chunks ORDER BY id")]


def check_store(location, *, chunks: int | None = None) -> None:
    """A working index in either store: it loads, no duplicate chunk, the counts agree, one generation serving."""
    from rung.rag.backend import is_url, load_index, parse_database_url

    if not is_url(str(location)):
        check_index(Path(location), chunks=chunks)
        return
    from rung.rag.pg_store import connect

    manifest = committed_manifest(location)
    records = stored_chunks(location)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == len(load_index(location, load_model=False)) == manifest["counts"]["chunks"]
    assert len({(r["source"], r["text"], r["line"]) for r in records}) == len(records)   # no text stored twice
    assert sum(f["chunks"] for f in manifest["files"].values()) == len(records)
    target = parse_database_url(location)
    with connect(target, vectors=False) as conn:
        generations = [g for (g,) in conn.execute(f"SELECT generation FROM {target.table}_generations")]
    assert max(generations) == manifest["generation"] and len(generations) == len(set(generations))
    if chunks is not None:
        assert len(records) == chunks
