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


# --------------------------------------------------------------------------------------- splitting, on a tokenizer
# whose tokens are visible: every run of non-space characters is one token, and so is a newline between two of them
# (so a heading trail joined to its text by "\n" costs one token more than the two counted apart, as in tokenizers
# that merge across the newline).

import re  # noqa: E402

from rung.rag.chunking import Chunker  # noqa: E402
from rung.rag.loaders import Section  # noqa: E402


class VisibleTokens:
    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=True):
        return {"offset_mapping": [m.span() for m in re.finditer(r"\S+|(?<=\S)\n(?=\S)", text)]}


def tokens(text: str) -> int:
    return len(VisibleTokens()(text)["offset_mapping"])


def chunker(chunk_tokens: int = 48, overlap: int = 0) -> Chunker:
    return Chunker(VisibleTokens(), ChunkerSettings(chunk_tokens, overlap))


def words(n: int, stem: str = "w") -> str:
    return " ".join(f"{stem}{i}" for i in range(n))


def test_a_piece_within_the_limit_is_kept_whole_at_offset_0():
    c = chunker()
    assert c._hard_cut(" " + words(16) + " ") == [(" " + words(16) + " ", 0, 16)]
    assert c._hard_cut("short") == [("short", 0, 1)]


def test_a_long_piece_is_cut_at_token_boundaries_with_the_overlap_and_nothing_lost():
    c = chunker(overlap=4)          # 16 tokens of text per chunk, 4 shared: a new piece every 12 tokens
    text = words(28)
    pieces = c._hard_cut(text)
    assert [(p[1], p[2]) for p in pieces] == [(0, 16), (text.index("w12"), 16)]   # 12 + 16 = 28: no third piece
    assert pieces[0][0] == words(16) and pieces[1][0] == " ".join(f"w{i}" for i in range(12, 28))


def test_a_long_heading_trail_keeps_exactly_its_last_32_tokens():
    c = chunker()
    trail = " > ".join(f"h{i}" for i in range(30))          # 59 tokens
    clipped = c._clip(trail)
    assert tokens(clipped) == 32 and trail.endswith(clipped) and clipped.split()[0] == trail.split()[-32]
    assert c._clip("A > B") == "A > B" and c._clip("") == ""


def test_identical_paragraphs_are_each_placed_at_their_own_line():
    para = words(12)
    chunks = chunker().split(Section(f"{para}\n\n{para}\n\n{para}", doc="d.txt"))
    assert [c["line"] for c in chunks] == [1, 3, 5]


def test_mapped_lines_past_the_map_take_its_last_line():
    para = words(12)
    chunks = chunker().split(Section(f"{para}\n\n{para}", doc="d.html", fmt="markdown", line_map=[5, 6]))
    assert [c["line"] for c in chunks] == [5, 6]
    chunks = chunker().split(Section(f"{para}\n\n{words(12, 'v')}\n\n{words(12, 'u')}", doc="d.html",
                                     fmt="markdown", line_map=[5, 6, 7, 8, 9]))
    assert [c["line"] for c in chunks] == [5, 7, 9]


def test_a_chunk_at_the_limit_keeps_its_heading_and_one_past_it_drops_it():
    title = " ".join(f"t{i}" for i in range(32))           # a 32-token heading trail

    def body(chunk_tokens, n):
        chunks = chunker(chunk_tokens).split(Section(f"# {title}\n\n{words(n)}", doc="d.md", fmt="markdown"))
        assert all(c["tokens"] <= chunk_tokens for c in chunks)
        return next(c for c in chunks if c["text"].startswith("w0"))

    # 32 + 15 = 47 counted apart, within 2 of the limit 49: counted exactly, the "\n" included: 48
    assert (body(49, 15)["context"], body(49, 15)["tokens"]) == (title, 48)
    # 32 + 16 = 48 apart, 49 exactly: at the limit, the trail stays
    assert (body(49, 16)["context"], body(49, 16)["tokens"]) == (title, 49)
    # 49 exactly against a limit of 48: the trail is dropped rather than the chunk overflowing
    assert (body(48, 16)["context"], body(48, 16)["tokens"]) == ("", 16)


def test_a_chunk_records_its_document_page_and_format_specific_headings():
    chunks = chunker().split(Section("Title\n=====\n\n" + words(5), doc="guide.rst", fmt="rst", page=3))
    assert chunks[-1]["doc"] == "guide.rst" and chunks[-1]["page"] == 3 and chunks[-1]["heading"] == "Title"
    md = chunker().split(Section("# Only a heading\n", doc="t.md", fmt="markdown"))
    assert [c["text"] for c in md] == ["# Only a heading"]    # all the section has: kept
    md = chunker().split(Section("# H\n\n" + words(14) + "\n\n# K\n\n" + words(14), doc="t.md", fmt="markdown"))
    assert not any(c["text"].strip() in ("# H", "# K") for c in md)
    assert [c["heading"] for c in md] == ["H", "K"]


def test_a_markdown_section_is_split_at_its_headings_first():
    text = f"{words(8)}\n# B\n{words(8, 'v')}"          # 8 + 2 + 8 tokens: more than one 16-token chunk
    chunks = chunker().split(Section(text, doc="d.md", fmt="markdown"))
    assert [c["text"] for c in chunks] == [words(8), f"# B\n{words(8, 'v')}"]
    assert [c["heading"] for c in chunks] == ["", "B"] and [c["line"] for c in chunks] == [1, 2]


def test_an_rst_title_is_a_heading_and_a_title_alone_is_dropped():
    text = "Setup\n~~~~~\n\n" + words(15)                # an underline markdown does not read as a heading
    chunks = chunker().split(Section(text, doc="g.rst", fmt="rst"))
    assert [c["text"] for c in chunks] == [words(15)] and chunks[0]["heading"] == "Setup"


def test_a_chunk_starting_at_a_lines_last_word_is_on_that_line():
    text = f"{words(16)}. x\n{words(10, 'v')}"   # "x", the last character of line 1, is a chunk of its own
    chunks = chunker().split(Section(text, doc="d.txt"))
    x = next(c for c in chunks if c["text"].startswith("x"))
    assert x["line"] == 1


class RunsOnly(VisibleTokens):
    """A lone character is no token, every character of a longer run is one: the splitter, which measures pieces
    one character at a time, leaves whole lines to the hard cut."""

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=True):
        return {"offset_mapping": [(i, i + 1) for m in re.finditer(r"\S{2,}", text) for i in range(*m.span())]}


def test_pieces_cut_from_a_long_line_keep_that_lines_number():
    text = "a" * 40 + "\n" + "b" * 40
    chunks = Chunker(RunsOnly(), ChunkerSettings(48, 0)).split(Section(text, doc="blob.txt"))
    assert "".join(c["text"] for c in chunks) == "a" * 40 + "b" * 40
    assert [(c["text"][0], c["line"]) for c in chunks] == [("a", 1)] * 3 + [("b", 2)] * 3
