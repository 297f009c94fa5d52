"""Search as both stores do it: dense (the embedder's cosine), or hybrid (dense fused with keywords).

Hybrid takes HYBRID_DEPTH chunks from each side, dense from the vectors and keywords from BM25 (bm25s, in a
folder) or PostgreSQL full text (tsvector + ts_rank_cd, in a database), and fuses the two rankings by weighted
reciprocal rank (Cormack et al. 2009):

    score(chunk) = 1 / (rrf_k + dense rank) + keyword_weight / (rrf_k + keyword rank)

A chunk missing from one list gets nothing from it. keyword_weight and rrf_k are settings (core/settings.py
RetrievalSettings); equal weights are the "naive" RRF, which measured worse than dense alone on the dev sets
(BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Any

# Chunks each side contributes before fusion (a query asking for more takes more).
HYBRID_DEPTH = 50


def settings_of(index) -> Any:
    from rung.core.settings import RetrievalSettings

    return getattr(index, "retrieval", None) or RetrievalSettings()


def fuse(dense: list, keyword: list, *, rrf_k: int, keyword_weight: float) -> list:
    """Weighted reciprocal-rank fusion of two ranked Hit lists; ties keep the dense order. Scores are fused."""
    from dataclasses import replace

    scores: dict[int, float] = {}
    first: dict[int, Any] = {}
    for weight, hits in ((1.0, dense), (keyword_weight, keyword)):
        for rank, hit in enumerate(hits, start=1):
            cid = hit.chunk["id"]
            scores[cid] = scores.get(cid, 0.0) + weight / (rrf_k + rank)
            first.setdefault(cid, hit)
    order = sorted(scores, key=lambda cid: -scores[cid])   # stable: dense first among equals
    return [replace(first[cid], rank=i, score=scores[cid]) for i, cid in enumerate(order, start=1)]


def ranked(index, query: str, depth: int) -> list:
    """The top `depth` chunks for a query, by the index's retrieval setting."""
    from rung.rag.embed import embed_query

    if index.model is None:
        raise RuntimeError("the index was loaded with load_model=False")
    settings = settings_of(index)
    vector = embed_query(index.model, query)
    if settings.retrieval == "dense":
        return index.search_vector(vector, depth)
    deep = max(depth, HYBRID_DEPTH)
    fused = fuse(index.search_vector(vector, deep), index.keyword_search(query, deep), rrf_k=settings.rrf_k,
                 keyword_weight=settings.keyword_weight)
    return fused[:depth]


def search(index, query: str, k: int) -> list:
    return ranked(index, query, max(0, min(int(k), len(index))))


def search_documents(index, query: str, k: int = 10) -> list[tuple[str, float, Any]]:
    """Chunks collapsed to their document (best rank wins): up to k (doc, score, best hit)."""
    total = len(index)
    depth = min(total, max(50, k * 5))
    while True:
        seen: dict[str, Any] = {}
        for hit in ranked(index, query, depth):
            seen.setdefault(hit.chunk.get("doc", hit.chunk["source"]), hit)
        if len(seen) >= k or depth >= total:
            break
        depth = min(total, depth * 4)
    return [(doc, hit.score, hit) for doc, hit in list(seen.items())[:k]]


# --------------------------------------------------------------------------------------------- BM25 (folder)

class KeywordIndex:
    """BM25 (bm25s, Lucene's variant) over the chunks' embedded text, English stop words and Snowball stems
    (the same stemmer family as PostgreSQL's english configuration). Built in memory on first use: ~1 s per
    10k chunks on one core."""

    def __init__(self, chunks: dict[int, dict[str, Any]]):
        import bm25s
        import Stemmer

        from rung.rag.chunking import embed_text

        self.ids = list(chunks)
        self.stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize([embed_text(chunks[c]) for c in self.ids], stopwords="en", stemmer=self.stemmer,
                                show_progress=False)
        self.bm25 = bm25s.BM25()
        self.bm25.index(tokens, show_progress=False)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        import bm25s

        k = min(int(k), len(self.ids))
        if k <= 0:
            return []
        words = bm25s.tokenize([query], stopwords="en", stemmer=self.stemmer, return_ids=False,
                               show_progress=False)[0]
        words = [w for w in words if w in self.bm25.vocab_dict]
        if not words:
            return []
        docs, scores = self.bm25.retrieve([words], k=k, show_progress=False, n_threads=1)
        return [(self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]
