"""Crash consistency: SIGKILL an ingest midway; the previous index still loads and answers, and the next ingest
completes with no duplicates. Killed from outside while embedding; from inside at every step between two writes
(the RUNG_RAG_KILL_AT hook, rag/layout.py KILL_POINTS, in a forked child); at every rename (strace fault
injection); and two ingests racing for the lock (strace delays one's flock)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from .rag_helpers import check_index, temp_files, write_docs

from rung.rag.ingest import ingest
from rung.rag.layout import KILL_POINTS
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


# --------------------------------------------------------------------------------------------- every kill point

STRACE = shutil.which("strace")
needs_strace = pytest.mark.skipif(STRACE is None or not sys.platform.startswith("linux"), reason="needs strace (Linux)")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """An index of four one-chunk notes (generation 1); tests copy it."""
    root = tmp_path_factory.mktemp("base")
    ingest([write_docs(root / "docs", 4)], root / "index", progress=False)
    return root


def update_case(base: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the base index and its notes, then one note changed, one deleted, two added (5 notes)."""
    shutil.copytree(base, tmp_path, dirs_exist_ok=True)
    docs = tmp_path / "docs"
    write_docs(docs, 6, tag=" (changed)")
    (docs / "note-3.md").unlink()
    return docs, tmp_path / "index"


def killed_at(point: str, docs: Path, index_dir: Path, timeout: float = 120) -> None:
    """Run an ingest in a forked child (the model is already loaded here) that SIGKILLs itself at `point`."""
    pid = os.fork()
    if pid == 0:
        code = 3  # the point was never reached
        try:
            os.environ["RUNG_RAG_KILL_AT"] = point
            ingest([docs], index_dir, progress=False, log=lambda message: None)
        except BaseException:
            code = 4
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while not (waited := os.waitpid(pid, os.WNOHANG))[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the ingest killed at {point} ran past {timeout}s")
        time.sleep(0.02)
    status = waited[1]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
        f"not killed at {point} (exit {os.waitstatus_to_exitcode(status)})"


def check_rerun(docs: Path, index_dir: Path, notes: int) -> None:
    """The next ingest ends with a working index: every note exactly once, with its current text."""
    done = ingest([docs], index_dir, progress=False)
    check_index(index_dir, chunks=notes)
    texts = {c["source"]: c["text"] for c in RagIndex.load(index_dir, load_model=False).chunks.values()}
    assert texts == {p.name: p.read_text().strip() for p in docs.iterdir()}
    assert done.chunks == notes


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_every_step_of_an_update_then_rerun(base, tmp_path, time_bound, point):
    time_bound(240)
    docs, index_dir = update_case(base, tmp_path)
    killed_at(point, docs, index_dir)
    committed = read_manifest(index_dir)["generation"]
    assert committed == (2 if point == "after_manifest" else 1)
    assert len(RagIndex.load(index_dir, load_model=False)) == (5 if committed == 2 else 4)  # old or new, whole
    check_rerun(docs, index_dir, 5)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_every_step_of_a_first_ingest_then_rerun(tmp_path, time_bound, point):
    time_bound(240)
    docs = write_docs(tmp_path / "docs", 4)
    killed_at(point, docs, tmp_path / "index")
    assert (read_manifest(tmp_path / "index") is None) == (point != "after_manifest")
    check_rerun(docs, tmp_path / "index", 4)


def run_traced(strace_args: list[str], docs: Path, index_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}  # no .pyc renames
    return subprocess.Popen([STRACE, "-o", os.devnull, *strace_args, sys.executable, "-c",
                             "from rung.cli.main import main; main()", "rag", "index", str(docs), "--index",
                             str(index_dir), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


# An update renames g000002/index.faiss, then g000002/chunks.jsonl, then manifest.json into place.
RENAMES = {1: "g000002/.index.faiss.", 2: "g000002/.chunks.jsonl.", 3: ".manifest.json."}


@needs_strace
@pytest.mark.parametrize("rename", sorted(RENAMES))
def test_sigkill_at_every_rename_then_rerun(base, tmp_path, time_bound, rename):
    time_bound(300)
    docs, index_dir = update_case(base, tmp_path)
    process = run_traced([f"--inject=rename,renameat,renameat2:signal=KILL:when={rename}"], docs, index_dir)
    _, err = process.communicate(timeout=240)
    assert process.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), err
    left = temp_files(index_dir)
    assert len(left) == 1 and left[0].startswith(RENAMES[rename]), left   # killed with the temp file written
    assert read_manifest(index_dir)["generation"] == 1 and len(RagIndex.load(index_dir, load_model=False)) == 4
    check_rerun(docs, index_dir, 5)   # temp file and half-written generation removed


@needs_strace
def test_two_ingests_racing_for_the_lock_end_with_a_working_index(base, tmp_path, time_bound):
    """A is held at its flock (strace delays it) while B changes the index and removes generation 1. A must
    then work from the manifest B committed, not from one it read before the lock."""
    time_bound(300)
    docs, index_dir = update_case(base, tmp_path)
    a = run_traced(["--inject=flock:delay_enter=6000000:when=1"], docs, index_dir)
    lock = str(index_dir / ".lock")
    deadline = time.monotonic() + 180
    while True:  # wait until A has opened .lock: it is then inside the delayed flock
        children = Path(f"/proc/{a.pid}/task/{a.pid}/children").read_text().split()
        fds = Path(f"/proc/{children[0]}/fd") if children else None
        try:
            if fds and any(os.readlink(fd) == lock for fd in fds.iterdir()):
                break
        except OSError:
            pass
        assert a.poll() is None and time.monotonic() < deadline, "A never reached the lock"
        time.sleep(0.05)
    b = ingest([docs], index_dir, progress=False)            # B: generation 2, generation 1 removed
    assert b.wrote and read_manifest(index_dir)["generation"] == 2
    (docs / "note-1.md").write_text("# Note 1 about invoices\n\nHow invoices work, edited after B.\n")
    out, err = a.communicate(timeout=240)
    assert a.returncode == 0, err
    assert "1 read, 4 unchanged" in out                      # A saw B's index, and only the newer edit
    assert read_manifest(index_dir)["generation"] == 3
    check_rerun(docs, index_dir, 5)


# --------------------------------------------------------------------------------------------- the database store

from .rag_helpers import check_store, committed_manifest, stored_chunks  # noqa: E402

from rung.rag.backend import load_index  # noqa: E402
from rung.rag.pg_store import PG_KILL_POINTS, lock_key  # noqa: E402


def check_rerun_db(docs: Path, url: str, notes: int) -> None:
    """The next ingest ends with a working index: every note exactly once, with its current text."""
    done = ingest([docs], url, progress=False)
    check_store(url, chunks=notes)
    assert {c["source"]: c["text"] for c in stored_chunks(url)} == {p.name: p.read_text().strip() for p in docs.iterdir()}
    assert done.chunks == notes


@pytest.fixture
def pg_update_case(tmp_path, pg_url) -> tuple[Path, str]:
    """Generation 1 of four notes in a fresh table, then the notes changed as in update_case (5 notes)."""
    url = pg_url()
    docs = write_docs(tmp_path / "docs", 4)
    ingest([docs], url, progress=False)
    write_docs(docs, 6, tag=" (changed)")
    (docs / "note-3.md").unlink()
    return docs, url


@pytest.mark.parametrize("point", PG_KILL_POINTS)
def test_sigkill_at_every_step_of_a_database_update_then_rerun(pg_update_case, time_bound, point):
    time_bound(240)
    docs, url = pg_update_case
    killed_at(point, docs, url)
    committed = committed_manifest(url)["generation"]
    assert committed == (2 if point == "after_commit" else 1)
    assert len(load_index(url, load_model=False)) == len(stored_chunks(url)) == (5 if committed == 2 else 4)
    check_rerun_db(docs, url, 5)


@pytest.mark.parametrize("point", PG_KILL_POINTS)
def test_sigkill_at_every_step_of_a_first_database_ingest_then_rerun(tmp_path, pg_url, time_bound, point):
    time_bound(240)
    url = pg_url()
    docs = write_docs(tmp_path / "docs", 4)
    killed_at(point, docs, url)
    assert (committed_manifest(url) is None) == (point != "after_commit")
    check_rerun_db(docs, url, 4)


def run_cli_ingest(docs: Path, url: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", "from rung.cli.main import main; main()", "rag", "index", str(docs),
                             "--index", url, "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_two_database_ingests_racing_for_the_lock_end_with_a_working_index(pg_update_case, time_bound):
    """The test holds the index's advisory lock while two ingests start and queue behind it; released, one
    writes generation 2 and the other, working from the manifest the first committed (read under the lock,
    not before it), finds nothing to do."""
    from rung.rag.backend import parse_database_url
    from rung.rag.pg_store import connect

    time_bound(300)
    docs, url = pg_update_case
    target = parse_database_url(url)
    holder = connect(target, vectors=False)
    holder.execute("SELECT pg_advisory_lock(%s)", [lock_key(target.table)])
    ingests = [run_cli_ingest(docs, url), run_cli_ingest(docs, url)]
    deadline = time.monotonic() + 180
    while holder.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[0] < 2:
        assert all(p.poll() is None for p in ingests) and time.monotonic() < deadline, "the ingests never queued"
        time.sleep(0.1)
    holder.close()   # releases the lock
    outputs = [p.communicate(timeout=240) for p in ingests]
    assert [p.returncode for p in ingests] == [0, 0], outputs
    assert committed_manifest(url)["generation"] == 2
    lines = sorted(out for out, _ in outputs)
    assert "0 read, 5 unchanged" in lines[0] and "5 read, 0 unchanged" in lines[1], lines
    assert all("waiting for the ingest" in err for _, err in outputs)
    check_rerun_db(docs, url, 5)
