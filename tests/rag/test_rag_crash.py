"""Crash consistency: SIGKILL an ingest midway; the previous index still loads and answers, and the next ingest
completes with no duplicates. Two kill points: during embedding (killed from outside) and after the new
generation's files are written but before manifest.json is swapped (the riskiest moment; killed from inside
via the RUNG_RAG_KILL_AT test hook)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rung.rag.ingest import ingest
from rung.rag.store import RagIndex, read_manifest

pytestmark = pytest.mark.slow
TOPICS = ["refunds", "invoices", "passwords", "webhooks", "exports", "seats", "tokens", "backups"]


def write_corpus(docs, count: int, start: int = 0):
    for i in range(start, start + count):
        topic = TOPICS[i % len(TOPICS)]
        (docs / f"note-{i:03d}.md").write_text(
            f"# Note {i} about {topic}\n\n" + " ".join(f"Paragraph {i}.{j} explains {topic} step {j} in detail."
                                                     for j in range(10)) + "\n")


def run_ingest(docs, index_dir, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-c", "from rung.cli.main import main; main()", "rag", "index", str(docs),
                             "--index", str(index_dir), "--no-progress"], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)


def check_old_index_answers(index_dir, generation, count):
    assert read_manifest(index_dir)["generation"] == generation
    loaded = RagIndex.load(index_dir)
    assert len(loaded) == loaded.index.ntotal == count
    assert loaded.search("Note 1 about invoices", 1)[0].chunk["source"] == "note-001.md"


def test_sigkill_mid_ingest_leaves_the_previous_index_usable(tmp_path):
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    write_corpus(docs, 3)
    base = ingest([docs], index_dir, progress=False)
    base_count = base.chunks
    write_corpus(docs, 40, start=3)   # 40 more chunks of ~130 word pieces: seconds of embedding on 2 cores

    # 1. killed from outside while embedding
    process = run_ingest(docs, index_dir)
    deadline = time.time() + 120
    for line in process.stderr:
        if line.startswith("embedding ") or time.time() > deadline:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    check_old_index_answers(index_dir, 1, base_count)

    # 2. killed after writing the new generation's files, before the manifest swap
    process = run_ingest(docs, index_dir, {"RUNG_RAG_KILL_AT": "before_manifest"})
    process.wait(timeout=180)
    assert process.returncode == -signal.SIGKILL
    orphan = index_dir / "g000002"
    assert (orphan / "index.faiss").exists() and (orphan / "chunks.jsonl").exists()
    check_old_index_answers(index_dir, 1, base_count)

    # 3. the next ingest completes: orphan cleaned up, every chunk exactly once
    done = ingest([docs], index_dir, progress=False)
    assert done.kept == base_count and done.removed == 0 and done.chunks == base_count + done.added
    manifest = read_manifest(index_dir)
    assert manifest["generation"] == 2 and manifest["counts"]["files"] == 43
    assert sorted(p.name for p in index_dir.iterdir() if p.is_dir()) == ["g000002"]
    ids = [json.loads(line)["id"] for line in (orphan / "chunks.jsonl").read_text().splitlines()]
    loaded = RagIndex.load(index_dir)
    assert len(ids) == len(set(ids)) == loaded.index.ntotal == done.chunks
    assert loaded.search("Note 17 about refunds step", 1)[0].chunk["source"].startswith("note-")
