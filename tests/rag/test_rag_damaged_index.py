"""A damaged, truncated or tampered index folder: one `Error:` line naming the file (exit 2), never a traceback
or a hang; nothing outside the index folder is ever followed or removed; `--rebuild` replaces what is damaged."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from .rag_helpers import check_index, one_error_line, write_docs

from rung.rag.ingest import ingest
from rung.rag.store import read_manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("damaged")
    docs = write_docs(root / "docs", 4)
    ingest([docs], root / "index", progress=False)
    return docs, root / "index"


@pytest.fixture
def index(built, tmp_path) -> tuple[Path, Path]:
    """A fresh copy of the built index (and its documents) to damage."""
    docs, index_dir = built
    shutil.copytree(docs, tmp_path / "docs")
    shutil.copytree(index_dir, tmp_path / "index")
    return tmp_path / "docs", tmp_path / "index"


def generation(index_dir: Path) -> Path:
    return index_dir / read_manifest(index_dir)["generation_dir"]


def edit_manifest(index_dir: Path, **changes) -> None:
    manifest = json.loads((index_dir / "manifest.json").read_text())
    (index_dir / "manifest.json").write_text(json.dumps({**manifest, **changes}))


def rebuild_works(rung, docs: Path, index_dir: Path) -> None:
    result = rung("rag", "index", docs, "--index", index_dir, "--rebuild", "--no-progress")
    assert result.exit_code == 0, result.output
    check_index(index_dir, chunks=4)
    assert rung("rag", "query", "--index", index_dir, "refunds", "-k", "1").exit_code == 0


def test_a_truncated_chunk_store_is_one_error_line(rung, index, time_bound):
    time_bound(120)
    docs, index_dir = index
    chunks = generation(index_dir) / "chunks.jsonl"
    text = chunks.read_text()
    chunks.write_text(text[: len(text) - 40])              # cut inside the last line
    out = one_error_line(rung("rag", "query", "--index", index_dir, "refunds"))
    assert f"{chunks}:4: not a complete JSON line (the file is truncated or damaged)" in out and "--rebuild" in out
    (docs / "note-0.md").write_text("# Changed\n\nNew text.\n")   # an update must read the old chunks: refused too
    assert "not a complete JSON line" in one_error_line(rung("rag", "index", docs, "--index", index_dir))
    chunks.write_text("\n".join(text.splitlines()[:3]) + "\n")     # cut at a line end: counts disagree
    assert "chunks.jsonl 3 chunks, but the manifest says 4" in one_error_line(
        rung("rag", "query", "--index", index_dir, "refunds"))
    rebuild_works(rung, docs, index_dir)


@pytest.mark.parametrize("damage, message", [
    (lambda lines: lines[:1] + lines[:1] + lines[2:], "appears twice"),
    (lambda lines: [json.dumps({**json.loads(lines[0]), "text": None})] + lines[1:], "'text' is missing or not text"),
    (lambda lines: ["[]"] + lines[1:], "not a JSON object"),
])
def test_corrupt_chunk_records_are_refused(rung, index, damage, message):
    _, index_dir = index
    chunks = generation(index_dir) / "chunks.jsonl"
    chunks.write_text("\n".join(damage(chunks.read_text().splitlines())) + "\n")
    assert message in one_error_line(rung("rag", "query", "--index", index_dir, "refunds"))


def test_a_damaged_or_missing_faiss_file_is_one_error_line(rung, index, time_bound):
    time_bound(120)
    docs, index_dir = index
    vectors = generation(index_dir) / "index.faiss"
    vectors.write_bytes(vectors.read_bytes()[:200])
    assert f"{vectors}: not a readable FAISS index" in one_error_line(rung("rag", "query", "--index", index_dir, "x"))
    vectors.unlink()
    os.mkfifo(vectors)                                     # would block a plain read forever
    assert "index file is a FIFO (named pipe)" in one_error_line(rung("rag", "query", "--index", index_dir, "x"))
    vectors.unlink()
    assert f"{vectors}: index file not found" in one_error_line(rung("rag", "query", "--index", index_dir, "x"))
    rebuild_works(rung, docs, index_dir)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_text(p.read_text()[:100]), "not valid JSON (line"),
    (lambda p: edit_manifest(p.parent, dim="x"), "'dim' is 'x', not int"),
    (lambda p: edit_manifest(p.parent, files={"a.md": "sha"}), "files: every entry needs a sha256"),
    (lambda p: edit_manifest(p.parent, hnsw={"efSearch": "many"}), "hnsw.efSearch 'many' is not a whole number"),
    (lambda p: edit_manifest(p.parent, generation_dir="../victim"),
     "generation_dir '../victim' points outside the index folder"),
    (lambda p: (p.unlink(), os.mkfifo(p)), "index manifest is a FIFO (named pipe)"),
])
def test_a_damaged_manifest_is_refused_then_replaced_by_rebuild(rung, index, time_bound, damage, message):
    time_bound(120)
    docs, index_dir = index
    victim = index_dir.parent / "victim"
    shutil.copytree(generation(index_dir), victim)
    damage(index_dir / "manifest.json")
    for args in (["query", "--index", index_dir, "refunds"], ["info", "--index", index_dir],
                 ["index", docs, "--index", index_dir]):
        out = one_error_line(rung("rag", *args))
        assert message in out and "manifest.json" in out and "--rebuild" in out
    rebuild_works(rung, docs, index_dir)
    assert sorted(p.name for p in victim.iterdir()) == ["chunks.jsonl", "index.faiss"]   # never touched


def test_a_generation_folder_that_is_a_link_out_of_the_index_is_refused(rung, index):
    docs, index_dir = index
    gen = generation(index_dir)
    outside = index_dir.parent / "elsewhere"
    shutil.move(gen, outside)
    gen.symlink_to(outside)
    assert "leads outside the index folder" in one_error_line(rung("rag", "query", "--index", index_dir, "refunds"))
    rebuild_works(rung, docs, index_dir)
    assert sorted(p.name for p in outside.iterdir()) == ["chunks.jsonl", "index.faiss"]  # the link went, not its target


def test_a_foreign_manifest_is_never_replaced(rung, tmp_path):
    docs = write_docs(tmp_path / "docs", 1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"format": "someone-else"}')
    out = one_error_line(rung("rag", "index", docs, "--index", tmp_path / "other", "--rebuild"))
    assert "is not a rung index" in out
    assert (tmp_path / "other" / "manifest.json").read_text() == '{"format": "someone-else"}'


def test_leftovers_of_a_crash_are_removed_by_the_next_ingest(index):
    docs, index_dir = index
    outside = index_dir.parent / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (index_dir / ".manifest.json.k3j_x9.tmp").write_text("{")
    (index_dir / "g000099").mkdir()
    (index_dir / "g000099" / ".index.faiss.abc.tmp").write_bytes(b"half")
    (index_dir / "g000098").symlink_to(outside)
    summary = ingest([docs], index_dir, progress=False)       # nothing changed, and still cleaned
    assert summary.wrote is False and summary.embedded == 0
    check_index(index_dir, chunks=4)
    assert not os.path.lexists(index_dir / "g000098") and (outside / "keep.txt").read_text() == "mine"


def test_a_folder_left_by_a_killed_first_ingest_is_taken_up_again(rung, tmp_path):
    docs = write_docs(tmp_path / "docs", 2)
    index_dir = tmp_path / "index"
    (index_dir / "g000001").mkdir(parents=True)
    (index_dir / ".lock").touch()
    (index_dir / "g000001" / "index.faiss").write_bytes(b"partial")
    (index_dir / "g000001" / ".chunks.jsonl.0flmrkd2.tmp").write_text("{")
    (index_dir / ".manifest.json.ixr22pt2.tmp").write_text("{")
    result = rung("rag", "index", docs, "--index", index_dir, "--no-progress")
    assert result.exit_code == 0, result.output
    check_index(index_dir, chunks=2)
    (index_dir / "g000002" / "notes.txt").parent.mkdir()
    (index_dir / "g000002" / "notes.txt").write_text("someone's")   # not a folder rung writes: refused
    (index_dir / "manifest.json").unlink()
    assert "other files (g000002) and no rung manifest.json" in one_error_line(
        rung("rag", "index", docs, "--index", index_dir))
