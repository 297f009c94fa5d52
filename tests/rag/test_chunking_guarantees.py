"""Chunk settings and what the embedder reads (rag/chunking.py), stated as guarantees at their exact boundaries:
the smallest useful chunk, the overlap's range (under half the chunk's text), and each problem's numbers."""

from __future__ import annotations

import pytest

from rung.core.errors import RungError
from rung.rag.chunking import HEADING_TOKENS, ChunkerSettings, embed_text, resolve_settings


def problems(chunk_tokens: int, overlap: int, limit: int = 254) -> list[str]:
    try:
        resolve_settings(ChunkerSettings(chunk_tokens, overlap), limit)
    except RungError as error:
        return error.message.split("\n")
    return []


def test_the_smallest_chunk_is_the_heading_budget_plus_16():
    smallest = HEADING_TOKENS + 16
    assert problems(smallest, 0) == []
    assert problems(smallest - 1, 0) == [f"--chunk-tokens {smallest - 1} is too small to be useful ({smallest} or more)"]


def test_the_overlap_is_from_0_to_under_half_the_chunks_text():
    # 101 tokens: 69 of text after the heading's 32; half is 34 (whole tokens)
    assert problems(101, 0) == [] and problems(101, 33) == []
    expected = ("--overlap {} must be between 0 and 33 (half the chunk's text, 69 word pieces after 32 for its "
                "heading)")
    assert problems(101, 34) == [expected.format(34)]
    assert problems(101, -1) == [expected.format(-1)]


def test_a_tiny_chunk_reports_both_problems_and_an_overlap_range_that_starts_at_0():
    assert problems(34, 1) == ["--chunk-tokens 34 is too small to be useful (48 or more)",
                               "--overlap 1 must be between 0 and 0 (half the chunk's text, 2 word pieces after 32 "
                               "for its heading)"]


def test_a_request_of_exactly_the_limit_is_the_limit():
    assert resolve_settings(ChunkerSettings(254, 16), 254) == ChunkerSettings(254, 16)
    assert resolve_settings(ChunkerSettings(255, 16), 254, special_tokens=1) == ChunkerSettings(254, 16)
    assert resolve_settings(ChunkerSettings(256, 16), 254).chunk_tokens == 254


def test_the_embedder_reads_the_heading_trail_then_the_text_or_the_text_alone():
    assert embed_text({"context": "Billing > Refunds", "text": "Refunds take 5 days."}) == \
        "Billing > Refunds\nRefunds take 5 days."
    assert embed_text({"context": "", "text": "Plain."}) == "Plain."
    assert embed_text({"text": "No trail."}) == "No trail."
