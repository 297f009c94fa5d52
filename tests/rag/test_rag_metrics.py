"""Retrieval metrics on a case computed by hand, and the eval file formats (pure Python, fast)."""

from __future__ import annotations

import json
import math

import pytest

from rung.core.errors import RungError
from rung.rag.metrics import evaluate, ndcg_at, read_queries


def test_metrics_match_a_hand_computed_case():
    runs = [
        # chunk-level ranking a, b, a, c, d -> documents a, b, c, d (the second `a` chunk collapses into rank 1)
        (["a", "b", "a", "c", "d"], {"c": 1, "x": 1}),   # x is relevant but never retrieved
        (["b", "a"], {"b": 1}),
        (["a"], {}),                                      # no relevant document: not counted (pytrec_eval)
    ]
    result = evaluate(runs)
    # query 1: c at document rank 3 of 2 relevant -> recall@1 0, recall@5 1/2, MRR 1/3,
    #          nDCG = (1/log2 4) / (1/log2 2 + 1/log2 3) = 0.5 / 1.6309 = 0.30657
    # query 2: b at rank 1 -> every metric 1
    ndcg_q1 = 0.5 / (1 + 1 / math.log2(3))
    assert result["queries"] == 2
    assert result["recall@1"] == pytest.approx(0.5)
    assert result["recall@5"] == pytest.approx(0.75)
    assert result["recall@10"] == pytest.approx(0.75)
    assert result["mrr@10"] == pytest.approx((1 / 3 + 1) / 2)
    assert result["ndcg@10"] == pytest.approx((ndcg_q1 + 1) / 2)
    assert result["ndcg@10"] == pytest.approx(0.653286, abs=1e-6)


def test_ndcg_uses_linear_graded_gain_like_trec_eval():
    # DCG = 1/log2(2) + 2/log2(3); ideal puts the grade-2 document first: 2/log2(2) + 1/log2(3)
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert ndcg_at(["a", "b"], {"a": 1, "b": 2}, 10) == pytest.approx(expected)
    assert expected == pytest.approx(0.85972, abs=1e-5)


def test_cutoff_excludes_documents_past_k():
    ranked = [f"d{i}" for i in range(12)]
    assert evaluate([(ranked, {"d10": 1})])["recall@10"] == 0.0
    assert evaluate([(ranked, {"d9": 1})])["recall@10"] == 1.0
    assert evaluate([(ranked, {"d9": 1})])["mrr@10"] == pytest.approx(0.1)


def test_reads_jsonl_queries_and_reports_every_bad_line(tmp_path):
    good = tmp_path / "q.jsonl"
    good.write_text(json.dumps({"query": "a?", "relevant": ["x.md", "y.md"]}) + "\n\n"
                    + json.dumps({"query": "b?", "relevant": {"z.md": 2}}) + "\n")
    assert read_queries(good) == [("a?", {"x.md": 1.0, "y.md": 1.0}), ("b?", {"z.md": 2.0})]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "a?", "relevant": 3}\nnot json\n{"relevant": ["x"]}\n')
    with pytest.raises(RungError) as error:
        read_queries(bad)
    message = error.value.message
    assert f"{bad}:1:" in message and f"{bad}:2: not JSON" in message and f"{bad}:3:" in message


def test_reads_beir_qrels_with_query_texts_next_to_them(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "first?"}\n{"_id": "q2", "text": "second?"}\n')
    qrels = tmp_path / "qrels" / "test.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\tdoc1\t1\nq1\tdoc2\t2\nq2\tdoc3\t0\n")
    assert read_queries(qrels) == [("first?", {"doc1": 1.0, "doc2": 2.0}), ("second?", {"doc3": 0.0})]
    lonely = tmp_path / "other.tsv"
    lonely.write_text("q9\tdoc\t1\n")
    with pytest.raises(RungError, match="query texts"):
        read_queries(tmp_path / "qrels" / ".." / "other.tsv", query_texts=tmp_path / "missing.jsonl")
