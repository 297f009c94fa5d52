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

import math
from pathlib import Path

from rung.core.rows import jsonl_records

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

def evaluate_index(rag_index, queries: list[tuple[str, dict[str, float]]], *, depth: int = 10) -> dict:
    """Run every query, collapse chunks to documents (best rank wins), score against the judgements."""
    known = rag_index.documents()
    unknown = sorted({d for _, q in queries for d in q if d not in known})
    runs = []
    for query, qrels in queries:
        ranked = [doc for doc, _, _ in rag_index.search_documents(query, depth)]
        runs.append((ranked, qrels))
    result = evaluate(runs)
    result["unknown_relevant"] = unknown
    return result


def _grade(value) -> float | None:
    """A relevance grade: a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _raise(problems: list[str]) -> None:
    from rung.core.errors import RungError

    if problems:
        raise RungError(problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []))


def _check_usable(path: Path, pairs: list[tuple[str, dict[str, float]]]) -> list[tuple[str, dict[str, float]]]:
    from rung.core.errors import RungError

    if not pairs:
        raise RungError(f"{path}: no queries")
    if not any(g > 0 for _, qrels in pairs for g in qrels.values()):
        raise RungError(f"{path}: none of its {len(pairs)} queries has a relevant document (a grade above 0); "
                        "there is nothing to score")
    return pairs


def read_queries(path: str | Path, query_texts: str | Path | None = None) -> list[tuple[str, dict[str, float]]]:
    """(query text, {doc: grade}) pairs from JSONL {query, relevant} or a BEIR qrels TSV.

    JSONL `relevant` is a list of documents (grade 1) or a mapping doc -> grade. A .tsv file is BEIR qrels
    (query-id, corpus-id, score, with a header line; TREC's four columns work too); the query texts come from
    `query_texts`, else from queries.jsonl next to the qrels folder (BEIR layout: DATASET/queries.jsonl,
    DATASET/qrels/test.tsv). Every bad line is reported at once; a file with no query that has a relevant
    document is an error (it would score 0 on nothing).
    """
    from rung.core.fileio import read_text

    path = Path(path)
    text = read_text(path, what="queries file")
    if path.suffix.lower() in (".tsv", ".qrels"):
        return _check_usable(path, _read_qrels(path, text, query_texts))
    out, problems = [], []
    for lineno, record, bad in jsonl_records(text):
        if bad:
            problems.append(f"{path}:{lineno}: not JSON ({bad.reason})")
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
        elif isinstance(relevant, dict) and all(_grade(g) is not None for g in relevant.values()):
            qrels = {str(d): float(g) for d, g in relevant.items()}
        else:
            problems.append(f'{path}:{lineno}: "relevant" must be a list of document paths (or doc -> finite grade)')
            continue
        out.append((query, qrels))
    _raise(problems)
    return _check_usable(path, out)


def _read_query_texts(path: Path) -> tuple[dict[str, str], list[str]]:
    from rung.core.fileio import read_text

    texts, problems = {}, []
    for lineno, record, bad in jsonl_records(read_text(path, what="query texts file")):
        if bad:
            problems.append(f"{path}:{lineno}: not JSON ({bad.reason})")
            continue
        qid = record.get("_id", record.get("id")) if isinstance(record, dict) else None
        if qid is None or not isinstance(record.get("text"), str) or not record["text"].strip():
            problems.append(f'{path}:{lineno}: needs an "_id" and a "text" string')
            continue
        texts[str(qid)] = record["text"]
    return texts, problems


def _read_qrels(path: Path, text: str, query_texts: str | Path | None) -> list[tuple[str, dict[str, float]]]:
    from rung.core.errors import RungError

    candidates = [Path(query_texts)] if query_texts else [path.parent.parent / "queries.jsonl",
                                                          path.parent / "queries.jsonl"]
    texts_path = next((p for p in candidates if p.is_file()), None)
    if texts_path is None:
        raise RungError(f"{path}: BEIR qrels need the query texts; none at {' or '.join(map(str, candidates))} "
                        "(pass --query-texts queries.jsonl with {\"_id\", \"text\"} lines)")
    texts, problems = _read_query_texts(texts_path)
    qrels: dict[str, dict[str, float]] = {}
    first = True
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = [c.strip() for c in (line.split("\t") if "\t" in line else line.split())]
        if first and row[0] in ("query-id", "query_id", "qid"):
            first = False
            continue  # the header
        first = False
        if len(row) not in (3, 4):
            problems.append(f"{path}:{lineno}: needs query-id, corpus-id and score separated by tabs "
                            f"(found {len(row)} columns)")
            continue
        qid, doc, score = (row[0], row[2], row[3]) if len(row) == 4 else row  # TREC: qid 0 doc grade
        try:
            grade = _grade(float(score))
        except ValueError:
            grade = None
        if grade is None or not qid or not doc:
            problems.append(f"{path}:{lineno}: needs a query id, a corpus id and a finite score (got {score[:20]!r})")
            continue
        qrels.setdefault(qid, {})[doc] = grade
    missing = [q for q in qrels if q not in texts]
    if missing:
        problems.append(f"{path}: {len(missing)} query ids have no text in {texts_path} (first: {missing[0]})")
    _raise(problems)
    return [(texts[q], rels) for q, rels in qrels.items()]
