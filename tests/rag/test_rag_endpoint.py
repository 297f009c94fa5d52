"""`rung rag answer --model openai:NAME`: retrieval here, the answer from a real OpenAI-compatible server."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_rag_answer_through_a_real_server_cites_numbered_sources(rung, tmp_path, transformers_server):
    base_url, name = transformers_server
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text("# Refunds\n\nRefunds are paid within 14 days of the return.\n")
    (docs / "shipping.md").write_text("# Shipping\n\nOrders ship on weekdays from the Leeds warehouse.\n")
    built = rung("rag", "index", docs, "--index", tmp_path / "idx")
    assert built.exit_code == 0, built.output
    result = rung("rag", "answer", "How long do refunds take?", "--index", tmp_path / "idx", "--model",
                  f"openai:{name}", "--api-base", base_url, "--max-new-tokens", "8", "-k", "2", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["model"] == f"openai:{name}" and isinstance(answer["answer"], str)
    assert [s["source"] for s in answer["sources"]][0].endswith("refunds.md")


def test_an_endpoint_model_without_a_base_url_is_one_line(rung, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nText.\n")
    assert rung("rag", "index", docs, "--index", tmp_path / "idx").exit_code == 0
    result = rung("rag", "answer", "q?", "--index", tmp_path / "idx", "--model", "openai:gpt-x")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "OPENAI_BASE_URL" in result.output
