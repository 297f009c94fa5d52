"""Weighted reciprocal-rank fusion (rag/hybrid.py), on hand-made rankings: the formula, the weight, the ties."""

from __future__ import annotations

import pytest

from rung.rag.hybrid import fuse
from rung.rag.store import Hit


def hits(*ids: int) -> list[Hit]:
    return [Hit(rank=r, score=1.0 / r, chunk={"id": i, "source": f"{i}.md", "line": 1, "text": ""})
            for r, i in enumerate(ids, start=1)]


@pytest.mark.parametrize("dense, keyword, weight, order", [
    ((1, 2, 3), (), 0.25, [1, 2, 3]),                 # no keyword hit: the dense order
    ((1, 2, 3), (3, 2, 1), 0.0, [1, 2, 3]),           # weight 0: keywords count for nothing
    ((1, 2, 3), (3, 2, 1), 1.0, [1, 3, 2]),           # mirrored: 1 and 3 tie (dense order), 2/62 just below
    ((1, 2, 3), (3,), 1.0, [3, 1, 2]),                # plain RRF: 1/63 + 1/61 beats 1/61 alone
    ((1, 2, 3), (3,), 0.25, [3, 1, 2]),               # even at 0.25: 1/63 + 0.25/61 > 1/61 (ranks differ little)
    ((1, 2), (9,), 0.25, [1, 2, 9]),                  # a keyword-only chunk joins, after the dense ones
    ((1, 2), (9,), 2.0, [9, 1, 2]),
])
def test_fusion_order(dense, keyword, weight, order):
    fused = fuse(hits(*dense), hits(*keyword), rrf_k=60, keyword_weight=weight)
    assert [h.chunk["id"] for h in fused] == order
    assert [h.rank for h in fused] == list(range(1, len(order) + 1))


def test_fused_scores_are_the_weighted_reciprocal_ranks():
    fused = {h.chunk["id"]: h.score for h in fuse(hits(1, 2), hits(2, 7), rrf_k=10, keyword_weight=0.5)}
    assert fused == pytest.approx({1: 1 / 11, 2: 1 / 12 + 0.5 / 11, 7: 0.5 / 12})
