"""Scale: PostgreSQL + pgvector HNSW vs FAISS HNSW at N chunks, on this machine, in one run.

    nice -n 10 .venv/bin/python benchmarks/bench_scale.py --chunks 100000 [--json out.json]

Embedding N real chunks is out of reach here (MiniLM embeds ~12-60 chunks/s on 2 shared cores: 1M chunks
would take days), so the index side uses SYNTHETIC 384-d unit vectors: 2,000 Gaussian cluster centres, each
vector a centre plus noise (real embeddings are clustered too; uniform random vectors would make HNSW look
worse than it is on text; noise of the same size as the centre makes neighbours cross clusters, so the
top 10 is not simply "the rest of the cluster"). The embedding cost is measured separately, per query, with
the real MiniLM.

    database  rung's own table layout (rag/pg_store.py: id, source, doc, record jsonb, search_text, vector,
              generated tsvector + GIN), rows COPYed in binary (chunks/s), then CREATE INDEX ... USING hnsw
              (m=32, ef_construction=80, as the folder store), then queries through PgIndex.search_vector
              (hnsw.ef_search 40 = pgvector's default, and 256 = rung's; one query per call, unix socket)
    folder    FAISS IndexHNSWFlat(M=32, efConstruction=80) inside IndexIDMap2, as rag/store.py builds it: add
              (chunks/s), then one query per call at efSearch 16 (FAISS's default) and 256 (rung's)
    truth     exact top-10 by brute force (numpy), for recall@10 of both
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
DIM = 384
QUERIES = 200


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def clustered(n: int, rng, centres):
    import numpy as np

    v = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 1.0, (n, DIM)).astype("float32")
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype("float32")


def exact_top10(vectors, queries):
    import numpy as np

    truth = []
    for begin in range(0, len(queries), 50):
        scores = queries[begin:begin + 50] @ vectors.T
        truth += [set(np.argpartition(-row, 10)[:10].tolist()) for row in scores]
    return truth


def latency(search, queries, truth) -> dict:
    times, recall = [], []
    for q, t in zip(queries, truth):
        started = time.perf_counter()
        found = search(q)
        times.append(time.perf_counter() - started)
        recall.append(len(set(found) & t) / 10)
    return {"p50_ms": round(1000 * pct(times, 0.5), 2), "p95_ms": round(1000 * pct(times, 0.95), 2),
            "recall@10_vs_exact": round(statistics.mean(recall), 4)}


def bench_faiss(vectors, queries, truth) -> dict:
    import numpy as np

    from rung.rag.store import build_index, set_ef_search

    started = time.perf_counter()
    index = build_index("hnsw", DIM, np.arange(len(vectors), dtype="int64"), vectors)
    seconds = time.perf_counter() - started
    row: dict = {"build_s": round(seconds, 1), "chunks_per_s": round(len(vectors) / seconds)}
    for ef in (16, 256):
        set_ef_search(index, ef)
        row[f"efSearch {ef}"] = latency(lambda q: index.search(q.reshape(1, -1), 10)[1][0].tolist(), queries, truth)
    return row


def bench_postgres(vectors, queries, truth, host: str) -> dict:
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from rung.rag import store
    from rung.rag.backend import parse_database_url
    from rung.rag.pg_store import PgIndex, PgStore, names

    url = f"postgresql://postgres@/postgres?host={host}&table=scale"
    target = parse_database_url(url)
    writer = PgStore(target)
    writer.prepare()
    conn, n = writer.conn, names(target.table)
    words = "refund invoice password webhook export seat token backup limit request".split()
    row: dict = {}
    started = time.perf_counter()
    with conn.transaction():
        writer._ensure_tables(DIM, rebuild=False)
        with conn.cursor().copy(sql.SQL("COPY {chunks} (id, source, doc, record, search_text, embedding) "
                                        "FROM STDIN (FORMAT BINARY)").format(**n)) as copy:
            copy.set_types(["int8", "text", "text", "jsonb", "text", "vector"])
            for i, vector in enumerate(vectors):
                text = " ".join(words[(i * 7 + j) % len(words)] for j in range(40)) + f" chunk {i}"
                source = f"doc-{i // 20}.md"
                record = {"id": i, "source": source, "doc": source, "line": 1, "text": text, "heading": ""}
                copy.write_row([i, source, source, Jsonb(record), text, vector])
    copy_s = time.perf_counter() - started
    row["copy_s"] = round(copy_s, 1)
    row["copy_chunks_per_s"] = round(len(vectors) / copy_s)
    conn.execute("SET maintenance_work_mem = '2GB'")
    conn.execute("SET max_parallel_maintenance_workers = 1")
    started = time.perf_counter()
    conn.execute(sql.SQL("CREATE INDEX {hnsw} ON {chunks} USING hnsw (embedding vector_ip_ops) WITH (m = {m}, "
                         "ef_construction = {ef})").format(**n, m=sql.Literal(store.HNSW_M),
                                                           ef=sql.Literal(store.HNSW_EF_CONSTRUCTION)))
    build_s = time.perf_counter() - started
    row["hnsw_build_s"] = round(build_s, 1)
    row["hnsw_chunks_per_s"] = round(len(vectors) / build_s)
    row["chunks_per_s_total"] = round(len(vectors) / (copy_s + build_s))
    sizes = conn.execute(sql.SQL("SELECT pg_total_relation_size(to_regclass(%s)), pg_relation_size(to_regclass(%s))"),
                         [f"{target.table}_chunks", f"{target.table}_hnsw"]).fetchone()
    row["table_with_indexes_mb"], row["hnsw_index_mb"] = round(sizes[0] / 2**20), round(sizes[1] / 2**20)
    manifest = {"format": "rung-rag-index", "format_version": 1, "store": "postgresql", "generation": 1,
                "model": "synthetic", "dim": DIM, "index_type": "hnsw", "chunker": {"chunk_tokens": 128, "overlap": 16},
                "counts": {"chunks": len(vectors)}, "files": {}, "hnsw": {"efSearch": store.HNSW_EF_SEARCH}}
    with conn.transaction():
        conn.execute(sql.SQL("INSERT INTO {manifest} (one, manifest) VALUES (true, %s)").format(**n), [Jsonb(manifest)])
    row["shared_buffers"] = conn.execute("SHOW shared_buffers").fetchone()[0] if not conn.closed else None
    conn.close()
    index = PgIndex.load(target, load_model=False)
    for ef in (40, 256):
        index.manifest["hnsw"]["efSearch"] = ef
        for q in queries[:10]:
            index.search_vector(q, 10)   # warm the cache
        row[f"ef_search {ef}"] = latency(lambda q: [h.chunk["id"] for h in index.search_vector(q, 10)], queries, truth)
    index.close()
    return row


def bench_query_embedding() -> dict:
    from rung.rag.embed import embed_query, load_embedder

    model = load_embedder(None)
    texts = [f"how do I export invoice number {i} as a CSV file" for i in range(60)]
    for t in texts[:5]:
        embed_query(model, t)
    times = []
    for t in texts:
        started = time.perf_counter()
        embed_query(model, t)
        times.append(time.perf_counter() - started)
    return {"p50_ms": round(1000 * pct(times, 0.5), 2), "p95_ms": round(1000 * pct(times, 0.95), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--shared-buffers", default=None,
                        help="restart the server with this shared_buffers (pgserver starts with 128MB)")
    parser.add_argument("--json")
    args = parser.parse_args()

    import numpy as np
    import pgserver
    from urllib.parse import parse_qs, urlsplit

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (2000, DIM)).astype("float32")
    vectors = clustered(args.chunks, rng, centres)
    queries = clustered(QUERIES, rng, centres)
    truth = exact_top10(vectors, queries)
    results: dict = {"chunks": args.chunks, "dim": DIM, "cores": os.cpu_count(), "vectors": "synthetic, clustered",
                     "load_average_at_start": round(os.getloadavg()[0], 1)}
    results["faiss_hnsw"] = bench_faiss(vectors, queries, truth)
    print(f"faiss: {results['faiss_hnsw']}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="rung-bench-scale-") as tmp:
        server = pgserver.get_server(Path(tmp), cleanup_mode="stop" if args.shared_buffers else "delete")
        if args.shared_buffers:
            server.psql(f"ALTER SYSTEM SET shared_buffers = '{args.shared_buffers}';")
            server.cleanup()   # stops it; started again with the setting
            server = pgserver.get_server(Path(tmp), cleanup_mode="delete")
        try:
            host = parse_qs(urlsplit(server.get_uri()).query)["host"][0]
            results["postgres_pgvector_hnsw"] = bench_postgres(vectors, queries, truth, host)
            results["postgres_pgvector_hnsw"]["pgvector"] = "0.6.2 (pgserver 0.1.4, PostgreSQL 16.2)"
        finally:
            server.cleanup()
    print(f"postgres: {results['postgres_pgvector_hnsw']}", file=sys.stderr)
    results["query_embedding_minilm"] = bench_query_embedding()
    results["load_average_at_end"] = round(os.getloadavg()[0], 1)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
