"""The store guarantees, once per store (a folder, and a real PostgreSQL + pgvector from the session fixture in
tests/conftest.py): idempotent incremental ingest, an edit that keeps the file's size, the warm path that never
loads the embedder, HNSW on and off, the same answers from both stores, hybrid retrieval, the LangChain
retriever; and the database URL's own rules (no password, a table, a reachable server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from .rag_helpers import check_store, committed_manifest, is_db, stored_chunks, write_docs

from rung.core.errors import RungError
from rung.rag import embed, store
from rung.rag.backend import load_index, parse_database_url
from rung.rag.ingest import ingest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_docs"


def small_corpus(root: Path) -> Path:
    docs = root / "docs"
    (docs / "billing").mkdir(parents=True)
    (docs / "billing" / "refunds.md").write_text(
        "# Refunds\n\nA full refund is possible within 14 days of the first payment.\n\n"
        "## Charged twice\n\nIf you were charged twice, contact support with the invoice number.\n")
    (docs / "sso.txt").write_text("Single sign-on works with Okta and Microsoft Entra ID.\n")
    (docs / "limits.rst").write_text("Rate limits\n===========\n\nThe API answers 429 when you send too many requests.\n")
    return docs


def test_reingest_is_idempotent_and_incremental(tmp_path, location):
    docs = small_corpus(tmp_path)
    first = ingest([docs], location, progress=False)
    assert (first.files_indexed, first.added, first.removed, first.kept) == (3, first.chunks, 0, 0)
    manifest = committed_manifest(location)
    assert manifest["model"] == "sentence-transformers/all-MiniLM-L6-v2" and manifest["dim"] == 384
    assert manifest["index_type"] == "flat" and manifest["counts"]["chunks"] == first.chunks
    assert manifest.get("store", "folder") == ("postgresql" if is_db(location) else "folder")
    before = sorted(c["id"] for c in stored_chunks(location))

    again = ingest([docs], location, progress=False)
    assert (again.embedded, again.added, again.removed, again.kept, again.wrote) == (0, 0, 0, first.chunks, False)
    assert committed_manifest(location)["generation"] == 1 and sorted(c["id"] for c in stored_chunks(location)) == before

    refunds = docs / "billing" / "refunds.md"
    refunds.write_text(refunds.read_text() + "\n## Yearly plans\n\nCancelling a yearly plan refunds unused months.\n")
    changed = ingest([docs], location, progress=False)
    assert changed.files_changed == 1 and changed.embedded == changed.added >= 1 and changed.kept >= 2
    check_store(location, chunks=changed.chunks)

    (docs / "sso.txt").unlink()
    removed = ingest(None, location, progress=False)   # no SOURCES: the recorded ones
    assert (removed.files_removed, removed.embedded, removed.added) == (1, 0, 0) and removed.removed >= 1
    check_store(location, chunks=removed.chunks)
    loaded = load_index(location)
    assert "sso.txt" not in loaded.documents()
    assert loaded.search("refund for a yearly subscription", 1)[0].chunk["source"] == "billing/refunds.md"


def test_an_edit_that_keeps_the_file_size_is_reindexed(tmp_path, location):
    """Same length, other bytes: the content hash, not the size or the time, decides what changed."""
    docs = write_docs(tmp_path / "docs", 3)
    note = docs / "note-1.md"
    ingest([docs], location, progress=False)
    old = note.read_text()
    new = old.replace("invoices", "receipts")
    assert len(new.encode()) == len(old.encode()) and new != old
    stat = note.stat()
    note.write_text(new)
    import os

    os.utime(note, ns=(stat.st_atime_ns, stat.st_mtime_ns))   # even the modification time stays
    summary = ingest([docs], location, progress=False)
    assert summary.files_changed == 1 and summary.embedded >= 1
    texts = {c["source"]: c["text"] for c in stored_chunks(location)}
    assert "receipts" in texts["note-1.md"] and "invoices" not in texts["note-1.md"]
    check_store(location, chunks=3)


def test_a_warm_reingest_of_unchanged_documents_never_loads_the_embedder(tmp_path, location, monkeypatch):
    docs = write_docs(tmp_path / "docs", 3)
    first = ingest([docs], location, progress=False)
    manifest = committed_manifest(location)

    def no_model(*args, **kwargs):
        raise AssertionError("the embedding model was loaded for an index with nothing to do")

    monkeypatch.setattr(embed, "load_embedder", no_model)
    monkeypatch.setattr(embed, "_CACHE", {})
    again = ingest([docs], location, progress=False)
    assert again.wrote is False and again.kept == first.chunks == 3 and again.embedded == 0
    assert committed_manifest(location) == manifest
    (docs / "note-0.md").write_text("# Changed\n\nNew text.\n")
    with pytest.raises(AssertionError, match="embedding model was loaded"):   # a change does need the model
        ingest([docs], location, progress=False)
    check_store(location, chunks=3)                                     # and the failed run changed nothing


def test_hnsw_above_the_threshold_and_exact_below(tmp_path, location, monkeypatch):
    monkeypatch.setattr(store, "HNSW_THRESHOLD", 6)        # 50,000 chunks in real use
    docs = write_docs(tmp_path / "docs", 5)
    assert ingest([docs], location, progress=False).index_type == "flat"
    write_docs(docs, 8)
    summary = ingest([docs], location, progress=False)
    assert summary.index_type == "hnsw" and summary.embedded == 3
    assert committed_manifest(location)["hnsw"]["efSearch"] == 256
    if is_db(location):
        assert hnsw_indexes(location) == 1
    assert load_index(location).search("How webhooks work", 1)[0].chunk["source"] == "note-3.md"
    for i in range(3, 8):
        (docs / f"note-{i}.md").unlink()
    assert ingest([docs], location, progress=False).index_type == "flat"
    if is_db(location):
        assert hnsw_indexes(location) == 0
    check_store(location, chunks=3)


def hnsw_indexes(url: str) -> int:
    from rung.rag.pg_store import connect

    target = parse_database_url(url)
    with connect(target, vectors=False) as conn:
        return conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%hnsw%%'",
                            [f"{target.table}_chunks"]).fetchone()[0]


# --------------------------------------------------------------------------------------------- same answers

@pytest.fixture(scope="module")
def both_indexes(tmp_path_factory, pg_server):
    """The shipped example indexed into a folder and into PostgreSQL (HNSW forced there: the harder case)."""
    folder = str(tmp_path_factory.mktemp("same") / "index")
    url = f"postgresql://postgres@/postgres?host={pg_server}&table=same_answers"
    ingest([EXAMPLE / "docs"], folder, progress=False)
    ingest([EXAMPLE / "docs"], url, index_type="hnsw", progress=False)
    return folder, url


def test_both_stores_give_the_same_top_10_and_scores(both_indexes):
    from rung.rag.metrics import read_queries

    folder, db = (load_index(x) for x in both_indexes)
    assert db.manifest["index_type"] == "hnsw" and len(folder) == len(db)
    for query, _ in read_queries(EXAMPLE / "queries.jsonl"):
        a, b = folder.search(query, 10), db.search(query, 10)
        assert [h.chunk["id"] for h in a] == [h.chunk["id"] for h in b], query
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_eval_through_the_cli_reproduces_the_folder_figures(rung, both_indexes):
    results = []
    for where in both_indexes:
        result = rung("rag", "eval", "--index", where, "--queries", EXAMPLE / "queries.jsonl", "--json")
        assert result.exit_code == 0, result.output
        results.append(json.loads(result.output))
    assert results[0] == results[1] and results[0]["queries"] == 22


def test_hybrid_finds_a_keyword_the_embedder_misses_in_both_stores(both_indexes):
    from rung.core.settings import RetrievalSettings

    for where in both_indexes:
        index = load_index(where)
        keyword = index.keyword_search("429", 3)
        assert keyword and keyword[0].chunk["source"] == "api/rate-limits.rst", where
        assert index.keyword_search("zzzqqq xyzzy", 3) == []
        index.retrieval = RetrievalSettings(retrieval="hybrid")
        hits = index.search("error 429", 5)
        assert hits[0].chunk["source"] == "api/rate-limits.rst"
        assert [h.rank for h in hits] == [1, 2, 3, 4, 5] and hits[0].score > hits[-1].score > 0


def test_the_retriever_works_on_both_stores(both_indexes):
    from rung.rag.retriever import RungRetriever

    for where in both_indexes:
        for retrieval in ("dense", "hybrid"):
            docs = RungRetriever.from_index(where, k=2, retrieval=retrieval).invoke("I never got the password reset email")
            assert len(docs) == 2 and docs[0].metadata["source"] == "account/password-reset.md"
    with pytest.raises(RungError, match="retrieval"):
        RungRetriever.from_index(both_indexes[1], retrieval="sparse")


def test_info_names_the_database(rung, both_indexes):
    result = rung("rag", "info", "--index", both_indexes[1])
    assert result.exit_code == 0, result.output
    assert "PostgreSQL 16" in result.output and "table same_answers" in result.output and "hnsw" in result.output


# --------------------------------------------------------------------------------------------- the URL

@pytest.mark.parametrize("url, message", [
    ("postgresql://me:hunter2@db.example/rag?table=docs", "holds a password"),
    ("postgresql://me@db.example/rag?table=docs&password=hunter2", "holds a password"),
    ("postgresql://me@db.example/rag", "no table parameter"),
    ("postgresql://me@db.example/rag?table=Robert'); DROP TABLE x;--", "lower-case letters"),
    ("mysql://me@db.example/rag?table=docs", "mysql:// is not a store"),
])
def test_a_bad_url_is_refused_before_anything_connects(url, message):
    with pytest.raises(RungError, match=message) as error:
        ingest(["docs"], url, progress=False)
    assert "hunter2" not in error.value.message


def test_a_url_without_password_is_what_gets_recorded(tmp_path, pg_url, monkeypatch):
    """The password comes from the environment; neither it nor anything but the given URL is stored."""
    url = pg_url()
    monkeypatch.setenv("PGPASSWORD", "not-needed-but-secret")   # trust auth here; libpq still reads it
    ingest([write_docs(tmp_path / "docs", 2)], url, progress=False)
    manifest = committed_manifest(url)
    assert "not-needed-but-secret" not in json.dumps(manifest)
    assert manifest["table"] == parse_database_url(url).table


def test_an_unreachable_server_is_one_line(rung, tmp_path):
    result = rung("rag", "query", "--index", f"postgresql:///rag?host={tmp_path}&table=docs", "hello")
    assert result.exit_code == 2 and "cannot connect to PostgreSQL" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_tables_rung_did_not_make_are_never_written(tmp_path, pg_url):
    from rung.rag.pg_store import connect

    url = pg_url()
    target = parse_database_url(url)
    with connect(target, vectors=False) as conn:
        conn.execute(f"CREATE TABLE {target.table}_chunks (id int)")
    with pytest.raises(RungError, match="is not part of a rung index"):
        ingest([write_docs(tmp_path / "docs", 1)], url, progress=False)
    with pytest.raises(RungError, match="no such index"):
        load_index(url)


def test_plan_steps_put_the_index_in_a_database_and_eval_it_hybrid(tmp_path, pg_url):
    from rung.core.protocol import StepContext
    from rung.engines.rag import eval_step, index_step

    url = pg_url()
    docs = write_docs(tmp_path / "docs", 3)
    (tmp_path / "q.jsonl").write_text('{"query": "How webhooks work", "relevant": ["note-3.md"]}\n'
                                      '{"query": "passwords", "relevant": ["note-2.md"]}\n')
    plan = {"data": {"documents": str(docs), "queries": str(tmp_path / "q.jsonl")}}
    write_docs(docs, 4)
    ctx = StepContext(plan=plan, plan_dir=tmp_path, run_dir=tmp_path / "run" / "index")
    result = index_step({"id": "index", "engine": "rag_index", "settings": {"index": url}}, ctx)
    assert result.outputs["index_dir"] == url and result.metrics["chunks"] == 4
    assert not (tmp_path / "run" / "index" / "index").exists()       # nothing written in the run folder
    eval_ctx = StepContext(plan=plan, plan_dir=tmp_path, run_dir=tmp_path / "run" / "eval",
                           outputs={"index": result.outputs})
    for retrieval in ("dense", "hybrid"):
        scored = eval_step({"id": "eval", "engine": "rag_eval", "settings": {"retrieval": retrieval}}, eval_ctx)
        assert scored.metrics["queries"] == 2 and scored.metrics["recall@1"] == 1.0
    with pytest.raises(RungError, match="not one of dense, hybrid"):
        eval_step({"id": "eval", "engine": "rag_eval", "settings": {"retrieval": "bm25"}}, eval_ctx)


def test_rebuild_replaces_a_damaged_database_index(tmp_path, pg_url):
    from rung.rag.layout import DamagedIndex
    from rung.rag.pg_store import connect

    url = pg_url()
    docs = write_docs(tmp_path / "docs", 2)
    ingest([docs], url, progress=False)
    target = parse_database_url(url)
    with connect(target, vectors=False) as conn:
        conn.execute(f"UPDATE {target.table}_manifest SET manifest = manifest - 'dim'")
    with pytest.raises(DamagedIndex, match="no 'dim'"):
        load_index(url, load_model=False)
    with pytest.raises(DamagedIndex, match="--rebuild"):
        ingest([docs], url, progress=False)
    rebuilt = ingest([docs], url, rebuild=True, progress=False, log=lambda m: None)
    assert rebuilt.wrote and rebuilt.chunks == 2
    assert committed_manifest(url)["generation"] == 2                # past the logged generation 1
    check_store(url, chunks=2)


def test_the_embedder_is_recorded_and_another_one_refused(tmp_path, location):
    ingest([write_docs(tmp_path / "docs", 1)], location, progress=False)
    assert committed_manifest(location)["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    with pytest.raises(RungError, match="was built with embedding model sentence-transformers/all-MiniLM-L6-v2"):
        load_index(location, model="sentence-transformers/all-mpnet-base-v2")
    with pytest.raises(RungError, match="--rebuild"):
        ingest([tmp_path / "docs"], location, model="sentence-transformers/all-mpnet-base-v2", progress=False)


@pytest.mark.slow
def test_probe_keeps_its_rag_index_in_the_database(rung, tmp_path, pg_url):
    tone = Path(__file__).resolve().parents[2] / "examples" / "tone" / "data" / "eval.jsonl"
    (tmp_path / "answers.yaml").write_text("goal: facts\n")
    (tmp_path / "eval.jsonl").write_text("\n".join(tone.read_text().splitlines()[:2]) + "\n")
    docs = write_docs(tmp_path / "docs", 2)
    url = pg_url()
    result = rung("probe", "--answers", tmp_path / "answers.yaml", "--eval", tmp_path / "eval.jsonl", "--model",
                  "builtin:tiny", "--docs", docs, "--index", url, "--max-new-tokens", "4", "--out", tmp_path / "probe")
    assert result.exit_code == 0, result.output
    import yaml

    assert "rag" in yaml.safe_load((tmp_path / "probe" / "evidence.yaml").read_text())["rungs"]
    assert not (tmp_path / "probe" / "index").exists()
    check_store(url, chunks=2)
