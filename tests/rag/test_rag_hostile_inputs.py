"""Hostile sources, eval files and options: each ends in exit 2 (one `Error:` line per problem) or a clean 0,
never a traceback, a hang or a temp file left behind."""

from __future__ import annotations

import json
import math
import os
import socket
import time

import pytest
from .rag_helpers import check_index, one_error_line, write_docs

from rung.core.errors import RungError
from rung.rag import loaders
from rung.rag.metrics import read_queries
from rung.rag.store import RagIndex, read_manifest


def chunk_sources(index_dir) -> set[str]:
    return {c["source"] for c in RagIndex.load(index_dir, load_model=False).chunks.values()}


def test_fifos_sockets_and_big_files_in_a_folder_are_skipped_with_a_reason(rung, tmp_path, time_bound, monkeypatch):
    time_bound(120)
    docs = write_docs(tmp_path / "docs", 2)
    os.mkfifo(docs / "pipe.md")                      # reading it would block forever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(docs / "sock.md"))
    (docs / "big.md").write_text("# Big\n\n" + "word " * 400)
    monkeypatch.setattr(loaders, "MAX_SOURCE_BYTES", 1000)
    started = time.monotonic()
    result = rung("rag", "index", docs, "--index", tmp_path / "index", "--no-progress")
    server.close()
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "skipped pipe.md: a FIFO (named pipe), not a regular file" in result.output
    assert "skipped sock.md: a socket, not a regular file" in result.output
    assert "skipped big.md: too large (0.0 MB; the limit is 0.0 MB)" in result.output
    assert "5 files: 2 read" in result.output and time.monotonic() - started < 60
    check_index(tmp_path / "index", chunks=2)


def test_a_fifo_a_device_or_a_too_large_file_named_directly_is_refused(rung, tmp_path, time_bound, monkeypatch):
    time_bound(60)
    os.mkfifo(tmp_path / "pipe.md")
    for source, words in [(tmp_path / "pipe.md", "a FIFO (named pipe)"), ("/dev/zero", "a character device")]:
        out = one_error_line(rung("rag", "index", source, "--index", tmp_path / "index"))
        assert f"{source}: is {words}, not a file or folder that can be indexed" in out
        assert not (tmp_path / "index").exists()     # refused before the index folder is made
    (tmp_path / "big.txt").write_text("x" * 2000)
    monkeypatch.setattr(loaders, "MAX_SOURCE_BYTES", 1000)
    out = one_error_line(rung("rag", "index", tmp_path / "big.txt", "--index", tmp_path / "index"))
    assert "big.txt: 0.0 MB, over the 0.0 MB limit for one source file" in out


def test_symlinks_out_of_the_folder_are_skipped_unless_followed(rung, tmp_path, time_bound):
    time_bound(120)
    docs = write_docs(tmp_path / "docs", 2)
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.txt").write_text("The vault code is 4711.\n")
    (docs / "passwd.txt").symlink_to("/etc/passwd")
    (docs / "secret.txt").symlink_to(outside / "secret.txt")
    (docs / "private").symlink_to(outside)
    (docs / "loop").symlink_to(docs)                 # inside the tree: never walked twice
    (docs / "inside.md").symlink_to(docs / "note-0.md")
    result = rung("rag", "index", docs, "--index", tmp_path / "index", "--no-progress")
    assert result.exit_code == 0, result.output
    for name in ("passwd.txt", "secret.txt", "private/"):
        assert f"skipped {name}: symbolic link out of the indexed folder (--follow-symlinks follows it)" in result.output
    assert chunk_sources(tmp_path / "index") == {"note-0.md", "note-1.md", "inside.md"}
    followed = rung("rag", "index", docs, "--index", tmp_path / "followed", "--follow-symlinks", "--no-progress")
    assert followed.exit_code == 0, followed.output
    sources = chunk_sources(tmp_path / "followed")
    assert {"passwd.txt", "secret.txt", "private/secret.txt"} <= sources
    assert not any(s.startswith("loop/") for s in sources)   # the loop back to docs/ is not walked again


def test_the_index_folder_inside_a_source_folder_is_not_indexed(tmp_path):
    from rung.rag.ingest import ingest

    docs = write_docs(tmp_path / "docs", 2)
    first = ingest([docs], docs / "index", progress=False)
    again = ingest([docs], docs / "index", progress=False)   # chunks.jsonl of the index is no source
    assert first.files_seen == again.files_seen == 2 and again.wrote is False


def test_bad_jsonl_lines_are_counted_and_reported(rung, tmp_path):
    docs = tmp_path / "corpus"
    docs.mkdir()
    (docs / "records.jsonl").write_text('{"_id": "r1", "text": "Refunds take five days."}\n{"_id": "r2", "te\n'
                                        '[1, 2]\n{"_id": "r3"}\n{"_id": "r4", "text": "  "}\n'
                                        '{"_id": "r5", "text": "Invoices are monthly."}\n')
    result = rung("rag", "index", docs, "--index", tmp_path / "index", "--json", "--no-progress")
    assert result.exit_code == 0, result.output
    warning = ('warning: records.jsonl: 4 bad lines left out (line 2: not JSON (Unterminated string starting at); '
               'line 3: not a JSON object; line 4: no "text" string, ...)')
    assert warning in result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["bad_lines"]["records.jsonl"]["count"] == 4 and summary["chunks"] == 2
    again = rung("rag", "index", docs, "--index", tmp_path / "index", "--no-progress")  # unchanged: still reported
    assert again.exit_code == 0 and warning in again.output and "4 bad JSONL lines in 1 file |" in again.output


def test_malformed_queries_and_qrels_report_every_bad_line(rung, tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "first?"}\nnot json\n{"_id": "q3"}\n')
    qrels = tmp_path / "qrels" / "test.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\tdoc1\t1\nq1\tdoc2\nq1\tdoc3\tmany\nq1\tdoc4\tnan\n\nq2\td\t1\n")
    result = rung("rag", "eval", "--index", tmp_path / "no-index", "--queries", qrels)
    out = one_error_line(result)
    for line in (f"{tmp_path / 'queries.jsonl'}:2: not JSON", f"{tmp_path / 'queries.jsonl'}:3: needs an \"_id\"",
                 f"{qrels}:3: needs query-id, corpus-id and score", f"{qrels}:4: needs a query id, a corpus id and a "
                 "finite score (got 'many')", f"{qrels}:5:", f"{qrels}: 1 query ids have no text"):
        assert line in out
    zero = tmp_path / "zero.jsonl"
    zero.write_text('{"query": "a?", "relevant": []}\n{"query": "b?", "relevant": {"x": 0}}\n')
    assert "none of its 2 queries has a relevant document" in one_error_line(
        rung("rag", "eval", "--index", tmp_path / "no-index", "--queries", zero))
    (tmp_path / "empty.tsv").write_text("query-id\tcorpus-id\tscore\n")
    (tmp_path / "texts.jsonl").write_text('{"_id": "q1", "text": "first?"}\n')
    with pytest.raises(RungError, match="no queries"):
        read_queries(tmp_path / "empty.tsv", query_texts=tmp_path / "texts.jsonl")
    nan = tmp_path / "nan.jsonl"
    nan.write_text('{"query": "a?", "relevant": {"x": NaN}}\n{"query": "b?", "relevant": {"y": true}}\n')
    out = one_error_line(rung("rag", "eval", "--index", tmp_path / "no-index", "--queries", nan))
    assert f"{nan}:1:" in out and f"{nan}:2:" in out


def test_trec_qrels_and_a_fifo_as_queries_file(rung, tmp_path, time_bound):
    time_bound(60)
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "first?"}\n')
    (tmp_path / "run.qrels").write_text("q1 0 doc1 2\n")
    assert read_queries(tmp_path / "run.qrels", tmp_path / "queries.jsonl") == [("first?", {"doc1": 2.0})]
    os.mkfifo(tmp_path / "q.jsonl")
    out = one_error_line(rung("rag", "eval", "--index", tmp_path, "--queries", tmp_path / "q.jsonl"))
    assert "queries file is a FIFO (named pipe), not a regular file" in out


@pytest.mark.parametrize("args, message", [
    (["--max-new-tokens", "-5"], "--max-new-tokens must be a whole number, 1 or more (got -5)"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be a whole number, 1 or more (got 0)"),
    (["--temperature", "nan"], "--temperature must be a finite number, 0 or more; 0 = greedy (got nan)"),
    (["--temperature", "-0.5"], "--temperature must be a finite number, 0 or more; 0 = greedy (got -0.5)"),
    (["--temperature", "inf"], "--temperature must be a finite number, 0 or more; 0 = greedy (got inf)"),
    (["--top-p", "0"], "--top-p must be above 0 and at most 1 (got 0.0)"),
    (["--top-p", "1.5"], "--top-p must be above 0 and at most 1 (got 1.5)"),
])
def test_generation_options_are_checked_before_any_model_loads(rung, tmp_path, monkeypatch, args, message):
    def no_load(*a, **k):
        raise AssertionError("an index or model was loaded before the options were checked")

    monkeypatch.setattr(RagIndex, "load", no_load)
    out = one_error_line(rung("rag", "answer", "--index", tmp_path, "question?", *args))
    assert f"Error: {message}" in out and len(out.strip().splitlines()) == 1


def test_query_options_are_checked_before_any_model_loads(rung, tmp_path, monkeypatch):
    monkeypatch.setattr(RagIndex, "load", lambda *a, **k: pytest.fail("loaded before the options were checked"))
    assert "--width must be 0 (all) or more" in one_error_line(rung("rag", "query", "--index", tmp_path, "q", "--width", "-1"))
    for k in ("0", "-3"):
        result = rung("rag", "query", "--index", tmp_path, "q", "-k", k)
        assert result.exit_code == 2 and "Invalid value for '-k'" in result.output and "Traceback" not in result.output
    assert "--batch-size: must be an integer at least 1, got 0" in one_error_line(
        rung("rag", "index", tmp_path, "--index", tmp_path / "index", "--batch-size", "0"))


def test_nan_scores_never_reach_json(rung, tmp_path, monkeypatch):
    from rung.rag.store import Hit

    class Loaded:
        def __len__(self):
            return 1

        def search(self, question, k):
            chunk = {"id": 1, "source": "a.md", "line": 1, "text": "t", "heading": ""}
            return [Hit(rank=1, score=float("nan"), chunk=chunk)]

    monkeypatch.setattr(RagIndex, "load", lambda *a, **k: Loaded())
    result = rung("rag", "query", "--index", tmp_path, "q", "--json")
    assert result.exit_code == 0, result.output

    def refuse(constant):
        raise ValueError(f"{constant} in JSON output")

    hits = json.loads(result.output, parse_constant=refuse)
    assert hits[0]["score"] is None and not math.isnan(hits[0]["rank"])


def test_engine_step_counts_bad_lines(tmp_path):
    from rung.core.protocol import StepContext
    from rung.engines.rag import index_step

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "c.jsonl").write_text('{"text": "Refunds take five days."}\nbroken\n')
    ctx = StepContext(plan={"data": {"documents": str(docs)}}, plan_dir=tmp_path, run_dir=tmp_path / "run")
    result = index_step({"id": "index", "engine": "rag_index"}, ctx)
    assert result.metrics["bad_lines"] == 1 and "c.jsonl: 1 bad line left out (line 2: not JSON" in result.summary
    assert read_manifest(tmp_path / "run" / "index")["files"]["c.jsonl"]["bad_lines"]["count"] == 1
