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
