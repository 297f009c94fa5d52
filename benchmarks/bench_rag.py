"""Benchmark the RAG engine side by side with LangChain's FAISS store, in one run, on this machine.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_rag.py [--quick] [--json out.json]

Measures (figures go to BENCHMARKS.md):
1. cold ingest chunks/s: `rung rag index` vs LangChain `FAISS.from_documents` + `save_local`, same embedder
   (all-MiniLM-L6-v2, loaded before timing), same input strings (our chunks with their heading trail), on the
   first 30 help topics, two interleaved rounds per side (best of each; the machine is shared);
2. warm re-ingest of the unchanged corpus vs the cold one;
3. query latency p50/p95 including the query embedding, at 10k and 100k chunks (synthetic vectors built from
   real MiniLM chunk vectors), exact vs HNSW at several efSearch, and recall@10 of HNSW against exact;
4. retrieval quality on a labelled set assembled from the Python standard library's help topics
   (pydoc_data.topics, PSF licence; 70 hand-written queries in benchmarks/data/pydoc_queries.jsonl), for our
   default chunks and for LangChain-notebook-style 4,000-character chunks embedded by the same model.

Needs langchain-community (dev only) for the LangChain side: pip install langchain-community.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
QUERIES = ROOT / "benchmarks" / "data" / "pydoc_queries.jsonl"


def pydoc_corpus(folder: Path, limit: int | None = None) -> list[str]:
    """One .rst file per help topic. Returns the topic names written."""
    from pydoc_data.topics import topics

    names = sorted(topics)[:limit] if limit else sorted(topics)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.rst").write_text(topics[name], encoding="utf-8")
    return names


def pydoc_qrels(names: list[str]) -> list[tuple[str, dict[str, float]]]:
    """Relevant = the query's topic, plus every topic whose text contains it (pydoc repeats sections: `if` is
    inside `compound`, `customization` inside `specialnames`, ...): the first 200 characters of the topic's
    body found verbatim in the other topic."""
    from pydoc_data.topics import topics

    norm = {k: " ".join(v.split()) for k, v in topics.items() if k in names}
    out = []
    for line in QUERIES.read_text().splitlines():
        record = json.loads(line)
        topic = record["topic"]
        if topic not in norm:
            continue
        snippet = " ".join(topics[topic].split("\n", 3)[-1].split())[:200]
        relevant = {f"{topic}.rst": 1.0}
        relevant.update({f"{d}.rst": 1.0 for d in norm if d != topic and snippet in norm[d]})
        out.append((record["query"], relevant))
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def timed_cpu(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process). CPU time is what other load on a shared machine
    disturbs least; both sides run in this process, so their CPU seconds compare directly."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_ingest(model, corpus: Path, work: Path, results: dict, rounds: int = 2) -> None:
    """Cold ingest, ours vs LangChain, interleaved `rounds` times (the machine is shared: take each side's best)."""
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings

    from rung.rag.chunking import embed_text
    from rung.rag.embed import _packaged_path
    from rung.rag.ingest import ingest
    from rung.rag.store import read_manifest

    # warm both code paths up on a few texts so neither pays first-call costs inside the timing
    model.encode(["warm up"] * 8)
    lc_embeddings = HuggingFaceEmbeddings(model_name=_packaged_path(), model_kwargs={"device": "cpu"})
    lc_embeddings.embed_documents(["warm up"] * 8)

    ours, theirs, ours_cpu, theirs_cpu = [], [], [], []
    for round_ in range(rounds):
        index_dir = work / f"ingest-{round_}"
        summary, cold, cpu = timed_cpu(ingest, [corpus], index_dir, progress=False)
        ours.append(cold)
        ours_cpu.append(cpu)
        manifest = read_manifest(index_dir)
        chunks = [json.loads(line) for line in
                  (index_dir / manifest["generation_dir"] / "chunks.jsonl").read_text().splitlines()]
        # the very strings we embed (heading trail + text), so both sides embed the same input
        docs = [Document(page_content=embed_text(c), metadata={"source": c["source"], "line": c["line"]})
                for c in chunks]

        def langchain_ingest():
            store = FAISS.from_documents(docs, lc_embeddings)
            store.save_local(str(work / f"langchain-{round_}"))
            return store

        _, wall, cpu = timed_cpu(langchain_ingest)
        theirs.append(wall)
        theirs_cpu.append(cpu)
    warm_times = []
    for _ in range(3):
        again, seconds = timed(ingest, [corpus], work / "ingest-0", progress=False)
        assert again.embedded == 0 and not again.wrote
        warm_times.append(seconds)
    warm, cold, lc = statistics.median(warm_times), min(ours), min(theirs)
    results["ingest"] = {
        "files": summary.files_indexed, "chunks": summary.chunks, "embedded": summary.embedded,
        "chunk_tokens": manifest["chunker"]["chunk_tokens"],
        "ours_cold_s_each": [round(x, 2) for x in ours], "langchain_s_each": [round(x, 2) for x in theirs],
        "ours_chunks_per_s": round(summary.chunks / cold, 2), "langchain_chunks_per_s": round(len(docs) / lc, 2),
        "speedup_vs_langchain": round(lc / cold, 3),
        "ours_cpu_s_each": [round(x, 2) for x in ours_cpu], "langchain_cpu_s_each": [round(x, 2) for x in theirs_cpu],
        "cpu_speedup_vs_langchain": round(min(theirs_cpu) / min(ours_cpu), 3),
        "ours_warm_s": round(warm, 4), "warm_speedup": round(cold / warm, 1),
    }
    print(f"ingest: {json.dumps(results['ingest'])}", file=sys.stderr)


def bench_quality(model, corpus: Path, work: Path, names: list[str], results: dict) -> None:
    import faiss
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from rung.rag.metrics import evaluate_index
    from rung.rag.ingest import ingest
    from rung.rag.metrics import evaluate
    from rung.rag.store import RagIndex

    qrels = pydoc_qrels(names)
    quality = {}
    for label in ("rung defaults (128 word pieces incl. heading trail, 16 overlap)",):
        index_dir = work / "quality"
        summary = ingest([corpus], index_dir, progress=False)
        scores = evaluate_index(RagIndex.load(index_dir), qrels)
        scores.pop("unknown_relevant")
        quality[label] = {**{k: round(v, 4) for k, v in scores.items() if k != "queries"},
                          "queries": scores["queries"], "chunks": summary.chunks}
    # LangChain notebook defaults: 4,000-character chunks, 200 overlap, embedded by the same model (which reads
    # only the first 256 word pieces of each).
    splitter = RecursiveCharacterTextSplitter(chunk_size=4000, chunk_overlap=200)
    texts, sources = [], []
    for path in sorted(corpus.iterdir()):
        for piece in splitter.split_text(path.read_text()):
            texts.append(piece)
            sources.append(path.name)
    truncated = sum(1 for t in texts if len(model.tokenizer.tokenize(t)) > 254)
    vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    runs = []
    for query, rels in qrels:
        q = model.encode([query], normalize_embeddings=True, convert_to_numpy=True)
        _, ids = index.search(q, min(100, len(texts)))
        runs.append(([sources[i] for i in ids[0] if i >= 0], rels))
    scores = evaluate(runs)
    quality["4,000-character chunks (LangChain notebook default)"] = {
        **{k: round(v, 4) for k, v in scores.items() if k != "queries"}, "queries": scores["queries"],
        "chunks": len(texts), "chunks_truncated_by_the_model": truncated}
    results["quality"] = quality
    print(f"quality: {json.dumps(quality)}", file=sys.stderr)


def synthetic_vectors(real, n: int, seed: int = 0):
    """n unit vectors near the real ones: a random blend of two real chunk vectors plus a little noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    a = real[rng.integers(0, len(real), n)]
    b = real[rng.integers(0, len(real), n)]
    w = rng.uniform(0.5, 1.0, (n, 1)).astype("float32")
    v = w * a + (1 - w) * b + rng.normal(0, 0.02, (n, real.shape[1])).astype("float32")
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype("float32")


def bench_latency(model, work: Path, sizes: list[int], results: dict) -> None:
    import numpy as np

    from rung.rag.embed import embed_query
    from rung.rag.store import RagIndex, all_vectors, build_index, set_ef_search

    real_index = RagIndex.load(work / "quality", load_model=False)
    _, real = all_vectors(real_index.index)
    queries = [json.loads(line)["query"] for line in QUERIES.read_text().splitlines()]
    for q in queries[:5]:
        embed_query(model, q)  # warm up
    embed_times, qvecs = [], []
    for q in queries:
        vec, seconds = timed(embed_query, model, q)
        embed_times.append(seconds)
        qvecs.append(vec)
    latency = {"query_embedding_ms": {"p50": round(1000 * pct(embed_times, 0.5), 2),
                                      "p95": round(1000 * pct(embed_times, 0.95), 2)}}
    for n in sizes:
        vectors = synthetic_vectors(real, n, seed=n)
        ids = np.arange(n, dtype="int64")
        flat, build_flat = timed(build_index, "flat", vectors.shape[1], ids, vectors)
        hnsw, build_hnsw = timed(build_index, "hnsw", vectors.shape[1], ids, vectors)
        exact = [flat.search(q, 10)[1][0] for q in qvecs]
        row = {"build_flat_s": round(build_flat, 2), "build_hnsw_s": round(build_hnsw, 2)}
        for label, index, ef in [("flat", flat, None), ("hnsw ef16", hnsw, 16), ("hnsw ef64", hnsw, 64),
                                 ("hnsw ef128", hnsw, 128), ("hnsw ef256", hnsw, 256), ("hnsw ef512", hnsw, 512)]:
            if ef:
                set_ef_search(index, ef)
            search_times, recall = [], []
            for rep in range(3):
                for q, truth in zip(qvecs, exact):
                    (_, found), seconds = timed(index.search, q, 10)
                    search_times.append(seconds)
                    if rep == 0:
                        recall.append(len(set(found[0]) & set(truth)) / 10)
            total = [s + e for s, e in zip(search_times, embed_times * 3)]
            row[label] = {"search_p50_ms": round(1000 * pct(search_times, 0.5), 3),
                          "search_p95_ms": round(1000 * pct(search_times, 0.95), 3),
                          "query_p50_ms": round(1000 * pct(total, 0.5), 2),
                          "query_p95_ms": round(1000 * pct(total, 0.95), 2),
                          "recall@10_vs_exact": round(sum(recall) / len(recall), 4)}
        latency[f"{n}"] = row
        print(f"latency {n}: {json.dumps(row)}", file=sys.stderr)
        del flat, hnsw
    results["latency"] = latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 topics and a 10k index only (a smoke run)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    import faiss
    import torch

    from rung.rag.embed import load_embedder

    results: dict = {"machine": {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                 "faiss_threads": faiss.omp_get_max_threads(), "faiss": faiss.__version__}}
    model, load_s = timed(load_embedder, None)
    results["model_load_s"] = round(load_s, 2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = work / "pydoc"
        names = pydoc_corpus(corpus, 20 if args.quick else None)
        # ingest speed on the first 30 topics, twice each side, interleaved; quality on all 79
        subset = work / "pydoc-subset"
        pydoc_corpus(subset, 8 if args.quick else 30)
        bench_ingest(model, subset, work, results)
        bench_quality(model, corpus, work, names, results)
        bench_latency(model, work, [10_000] if args.quick else [10_000, 100_000], results)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
