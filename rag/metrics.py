"""Retrieval metrics the BEIR / pytrec_eval way, and the eval file formats. Pure Python, no numpy.

Per query, with a ranked list of documents (chunks already collapsed to documents, best rank wins) and graded
relevance judgements `qrels` {doc: grade}, grade > 0 meaning relevant:

    recall@k = |relevant in top k| / |relevant|
    MRR@k    = 1 / rank of the first relevant document in the top k (0 if none)
    nDCG@k   = DCG@k / IDCG@k,  DCG@k = sum_{i=1..k} grade_i / log2(i + 1)  (trec_eval's linear gain),
               IDCG@k = the same sum over all judged grades sorted high to low, cut at k

Each is averaged over the queries that have at least one relevant document (pytrec_eval skips the others).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

KEYS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")


def recall_at(ranked: list[str], qrels: dict[str, float], k: int) -> float:
    relevant = {d for d, g in qrels.items() if g > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at(ranked: list[str], qrels: dict[str, float], k: int) -> float:
    for rank, doc in enumerate(ranked[:k], start=1):
        if qrels.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked: list[str], qrels: dict[str, float], k: int) -> float:
    dcg = sum(qrels.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], start=1)
              if qrels.get(doc, 0) > 0)
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg else 0.0


def dedupe(ranked: list[str]) -> list[str]:
    """Collapse chunks to documents: keep each document at its best (first) rank."""
    seen: dict[str, None] = {}
    for doc in ranked:
        seen.setdefault(doc, None)
    return list(seen)


def evaluate(runs: list[tuple[list[str], dict[str, float]]]) -> dict[str, float]:
    """Mean metrics over (ranked docs, qrels) pairs whose qrels hold a relevant document; plus `queries`."""
    scored = [(dedupe(r), q) for r, q in runs if any(g > 0 for g in q.values())]
    n = len(scored)
    out: dict[str, float] = {}
    for key in KEYS:
        name, k = key.split("@")
        fn = {"recall": recall_at, "mrr": mrr_at, "ndcg": ndcg_at}[name]
        out[key] = sum(fn(r, q, int(k)) for r, q in scored) / n if n else 0.0
    out["queries"] = n
    return out


# --------------------------------------------------------------------------------------------- eval files

def read_queries(path: str | Path, query_texts: str | Path | None = None) -> list[tuple[str, dict[str, float]]]:
    """(query text, {doc: grade}) pairs from JSONL {query, relevant} or a BEIR qrels TSV.

    JSONL `relevant` is a list of documents (grade 1) or a mapping doc -> grade. A .tsv file is BEIR qrels
    (query-id, corpus-id, score, with a header line); the query texts come from `query_texts`, else from
    queries.jsonl next to the qrels folder (BEIR layout: DATASET/queries.jsonl, DATASET/qrels/test.tsv).
    """
    from rung.core.errors import RungError

    path = Path(path)
    if not path.is_file():
        raise RungError(f"{path}: queries file not found")
    if path.suffix.lower() in (".tsv", ".qrels"):
        return _read_qrels(path, query_texts)
    out, problems = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"{path}:{lineno}: not JSON ({error.msg})")
            continue
        query = record.get("query") if isinstance(record, dict) else None
        relevant = record.get("relevant") if isinstance(record, dict) else None
        if not isinstance(query, str) or not query.strip():
            problems.append(f'{path}:{lineno}: needs a "query" string')
            continue
        if isinstance(relevant, str):
            relevant = [relevant]
        if isinstance(relevant, list) and all(isinstance(r, str) for r in relevant):
            qrels = {r: 1.0 for r in relevant}
        elif isinstance(relevant, dict) and all(isinstance(g, (int, float)) for g in relevant.values()):
            qrels = {str(d): float(g) for d, g in relevant.items()}
        else:
            problems.append(f'{path}:{lineno}: "relevant" must be a list of document paths (or doc -> grade)')
            continue
        out.append((query, qrels))
    if problems:
        raise RungError(problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []))
    if not out:
        raise RungError(f"{path}: no queries")
    return out


def _read_qrels(path: Path, query_texts: str | Path | None) -> list[tuple[str, dict[str, float]]]:
    from rung.core.errors import RungError

    candidates = [Path(query_texts)] if query_texts else [path.parent.parent / "queries.jsonl",
                                                          path.parent / "queries.jsonl"]
    texts_path = next((p for p in candidates if p.is_file()), None)
    if texts_path is None:
        raise RungError(f"{path}: BEIR qrels need the query texts; none at {' or '.join(map(str, candidates))} "
                        "(pass --query-texts queries.jsonl with {\"_id\", \"text\"} lines)")
    texts = {}
    for line in texts_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            texts[str(record.get("_id", record.get("id")))] = record["text"]
    qrels: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) < 3 or row[0] in ("query-id", "query_id", "qid"):
                continue
            try:
                grade = float(row[2])
            except ValueError:
                continue
            qrels.setdefault(row[0], {})[row[1]] = grade
    missing = [q for q in qrels if q not in texts]
    if missing:
        raise RungError(f"{path}: {len(missing)} query ids have no text in {texts_path} (first: {missing[0]})")
    return [(texts[q], rels) for q, rels in qrels.items()]
