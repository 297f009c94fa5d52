"""Dense vs hybrid retrieval, both stores, side by side with LangChain's EnsembleRetriever, in one run.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_hybrid.py [--json out.json]

On the project's two labelled dev sets (the pydoc help topics with benchmarks/data/pydoc_queries.jsonl, 70
queries, and examples/support_docs, 22 queries), the same corpus is indexed by `rung rag index` into a folder
and into PostgreSQL + pgvector (a throwaway pgserver), then scored with `evaluate_index` (nDCG@10, recall@10
over documents):

    rung dense      folder and database (they must agree: the same top-10)
    rung hybrid     weighted RRF of dense with BM25 (folder) / PostgreSQL full text (database), at several
                    keyword weights (1.0 is plain, "naive" RRF)
    LangChain       EnsembleRetriever([BM25Retriever, FAISS retriever], weights=[0.5, 0.5]) as its docs show,
                    over the very same chunk texts and the same MiniLM vectors (FAISS.from_embeddings), each
                    retriever k=50 (our fusion depth), then collapsed to documents the same way

Needs the dev extra (langchain-classic, langchain-community, rank_bm25, pgserver, psycopg, pgvector).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
WEIGHTS = (0.25, 0.5, 1.0)
DEPTH = 50


def start_postgres(folder: Path):
    import pgserver
    from urllib.parse import parse_qs, urlsplit

    server = pgserver.get_server(folder, cleanup_mode="delete")
    return server, parse_qs(urlsplit(server.get_uri()).query)["host"][0]


def scores(index, qrels) -> dict:
    from rung.rag.metrics import evaluate_index

    result = evaluate_index(index, qrels)
    return {"ndcg@10": round(result["ndcg@10"], 4), "recall@10": round(result["recall@10"], 4)}


def langchain_ensemble(folder_index, qrels) -> dict:
    """EnsembleRetriever(BM25Retriever + FAISS) over our chunks and vectors, scored like ours."""
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings

    from rung.rag.chunking import embed_text
    from rung.rag.embed import _packaged_path
    from rung.rag.metrics import evaluate
    from rung.rag.store import all_vectors

    ids, vectors = all_vectors(folder_index.index)
    chunks = [folder_index.chunks[int(i)] for i in ids]
    texts = [embed_text(c) for c in chunks]
    metas = [{"doc": c.get("doc", c["source"])} for c in chunks]
    embeddings = HuggingFaceEmbeddings(model_name=_packaged_path(), model_kwargs={"device": "cpu"},
                                       encode_kwargs={"normalize_embeddings": True})
    faiss_store = FAISS.from_embeddings(list(zip(texts, vectors.tolist())), embeddings, metadatas=metas)
    bm25 = BM25Retriever.from_documents([Document(page_content=t, metadata=m) for t, m in zip(texts, metas)], k=DEPTH)
    ensemble = EnsembleRetriever(retrievers=[bm25, faiss_store.as_retriever(search_kwargs={"k": DEPTH})],
                                 weights=[0.5, 0.5])
    dense = faiss_store.as_retriever(search_kwargs={"k": DEPTH})
    out = {}
    for label, retriever in (("LangChain FAISS (dense)", dense), ("LangChain EnsembleRetriever (BM25 + FAISS)", ensemble)):
        started = time.perf_counter()
        runs = [([d.metadata["doc"] for d in retriever.invoke(query)], rels) for query, rels in qrels]
        result = evaluate(runs)
        out[label] = {"ndcg@10": round(result["ndcg@10"], 4), "recall@10": round(result["recall@10"], 4),
                      "ms_per_query": round(1000 * (time.perf_counter() - started) / len(qrels), 1)}
    return out


def bench_dataset(name: str, docs: Path, qrels, work: Path, host: str) -> dict:
    from rung.core.settings import RetrievalSettings
    from rung.rag.backend import load_index
    from rung.rag.ingest import ingest

    folder = str(work / f"{name}-index")
    url = f"postgresql://postgres@/postgres?host={host}&table={name.replace('-', '_')}"
    row: dict = {"queries": len(qrels)}
    for label, where in (("folder", folder), ("database", url)):
        summary = ingest([docs], where, progress=False)
        row[f"{label}_ingest_s"] = round(summary.seconds, 1)
        row["chunks"] = summary.chunks
    indexes = {"folder": load_index(folder), "database": load_index(url)}
    for label, index in indexes.items():
        started = time.perf_counter()
        row[f"rung dense ({label})"] = {**scores(index, qrels),
                                        "ms_per_query": round(1000 * (time.perf_counter() - started) / len(qrels), 1)}
    for weight in WEIGHTS:
        for label, index in indexes.items():
            index.retrieval = RetrievalSettings(retrieval="hybrid", keyword_weight=weight)
            started = time.perf_counter()
            keyword = "BM25" if label == "folder" else "full text"
            row[f"rung hybrid ({label}, {keyword}, keyword weight {weight})"] = {
                **scores(index, qrels), "ms_per_query": round(1000 * (time.perf_counter() - started) / len(qrels), 1)}
    for label, index in indexes.items():
        index.retrieval = RetrievalSettings(retrieval="dense", keyword_weight=0.0)
    row.update(langchain_ensemble(indexes["folder"], qrels))
    print(f"{name}: {json.dumps(row)}", file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from bench_rag import pydoc_corpus, pydoc_qrels

    from rung.rag.metrics import read_queries

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="rung-bench-hybrid-") as tmp:
        work = Path(tmp)
        pg_folder = work / "pg"
        pg_folder.mkdir()
        server, host = start_postgres(pg_folder)
        try:
            names = pydoc_corpus(work / "pydoc")
            results["pydoc"] = bench_dataset("pydoc", work / "pydoc", pydoc_qrels(names), work, host)
            support = ROOT / "examples" / "support_docs"
            results["support_docs"] = bench_dataset("support-docs", support / "docs",
                                                    read_queries(support / "queries.jsonl"), work, host)
        finally:
            server.cleanup()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
