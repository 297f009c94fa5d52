"""Token-aware chunks: split on structure first (headings, paragraphs, lines), measured in the embedder's tokens.

LangChain's FAISS notebooks default to 4,000-character chunks, which a 256-word-piece embedder silently
truncates to its first ~1,000 characters. Here the chunk size is counted with the embedding model's own
tokenizer, defaults to what the model can see (max_seq_length minus [CLS]/[SEP]), and a last pass cuts any
piece the splitter could not bring under the limit at token boundaries, so no chunk is ever truncated.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from rung.rag.loaders import _RST_UNDERLINE, Section, headings

# The default chunk size, in the embedder's word pieces (heading trail included), capped at what the model
# reads (254 for MiniLM: 256 minus [CLS]/[SEP]). Why not the cap: MiniLM was trained on 128-token inputs, and on
# both labelled sets we have 128 beat 254 (BENCHMARKS.md): nDCG@10 0.814 vs 0.780 on the pydoc set,
# 1.000 vs 0.957 on examples/support_docs. Pass --chunk-tokens for models trained on longer inputs.
DEFAULT_CHUNK_TOKENS = 128
# Word pieces of each chunk kept for its heading trail ("Billing > Refunds"), embedded in front of the text:
# a chunk from the middle of a long section still says what it is about.
HEADING_TOKENS = 32


def embed_text(chunk: dict[str, Any]) -> str:
    """What the embedder reads for a chunk: its heading trail, then its text."""
    return f"{chunk['context']}\n{chunk['text']}" if chunk.get("context") else chunk["text"]

CHUNKER_VERSION = 4  # bump when chunk boundaries change: the next ingest re-chunks (and re-embeds only new text)


@dataclass(frozen=True)
class ChunkerSettings:
    chunk_tokens: int = 0   # 0 = auto: DEFAULT_CHUNK_TOKENS, or the embedder's limit when that is lower
    overlap: int = 16       # word pieces shared by neighbouring chunks

    def as_dict(self) -> dict[str, Any]:
        return {"chunk_tokens": self.chunk_tokens, "overlap": self.overlap, "version": CHUNKER_VERSION,
                "heading_tokens": HEADING_TOKENS,
                "splitter": "langchain_text_splitters.RecursiveCharacterTextSplitter, structure first"}


def token_limit(model) -> int:
    """Word pieces a SentenceTransformer sees per input, not counting the special tokens it adds."""
    limit = model.max_seq_length or model.tokenizer.model_max_length
    return int(limit) - model.tokenizer.num_special_tokens_to_add()


def resolve_settings(requested: ChunkerSettings, limit: int, special_tokens: int = 2) -> ChunkerSettings:
    """Fill in the default size and check the request against the model's limit.

    A request up to the model's max_seq_length (limit + its special tokens, e.g. 256 for MiniLM) means "as much
    as the model reads" and becomes `limit`; more than that is refused rather than silently truncated."""
    from rung.core.errors import RungError

    size = requested.chunk_tokens or min(DEFAULT_CHUNK_TOKENS, limit)
    if limit < size <= limit + special_tokens:
        size = limit
    problems = []
    if size > limit:
        problems.append(f"--chunk-tokens {size} is more than the embedding model reads ({limit} word pieces "
                        f"after special tokens); it would silently drop the rest. Use {limit} or less.")
    if size < HEADING_TOKENS + 16:
        problems.append(f"--chunk-tokens {size} is too small to be useful ({HEADING_TOKENS + 16} or more)")
    body = size - HEADING_TOKENS
    if requested.overlap < 0 or requested.overlap >= body // 2:
        problems.append(f"--overlap {requested.overlap} must be between 0 and {max(body // 2 - 1, 0)} "
                        f"(half the chunk's text, {body} word pieces after {HEADING_TOKENS} for its heading)")
    if problems:
        raise RungError(problems)
    return ChunkerSettings(chunk_tokens=size, overlap=requested.overlap)


_SEPARATORS = {
    # Markdown (and HTML converted to it): headings, fences, rules, paragraphs, lines, words.
    "markdown": [r"\n#{1,6} ", r"```\n", r"\n\*\*\*+\n", r"\n---+\n", r"\n___+\n", r"\n\n", r"\n", r" ", ""],
    # reStructuredText: before a section title (a line over an underline), directives, paragraphs.
    "rst": [r"\n(?=[^\n]+\n(?:={3,}|-{3,}|~{3,}|\^{3,}|\*{3,}|\+{3,}|#{3,}|\"{3,})\n)", r"\n\n(?=\.\. )",
            r"\n\n", r"\n", r" ", ""],
    "text": [r"\n\n", r"\n", r"(?<=[.!?]) ", r" ", ""],
}


class Chunker:
    """Splits sections into chunk records {text, context, line, page, heading, doc, tokens}.

    The text gets chunk_tokens - HEADING_TOKENS word pieces; `context` (the heading trail, clipped to
    HEADING_TOKENS) goes in front of it when embedding, so `tokens` (of both) never exceeds chunk_tokens."""

    def __init__(self, tokenizer, settings: ChunkerSettings):
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        self.tokenizer = tokenizer
        self.settings = settings
        # The splitter measures whole sections; transformers would warn they exceed the model's limit (they
        # are about to be split, not embedded): mark that once-only warning as already given.
        getattr(tokenizer, "deprecation_warnings", {})["sequence-length-is-longer-than-the-specified-maximum"] = True

        self.body_tokens = settings.chunk_tokens - HEADING_TOKENS
        self._clipped: dict[str, str] = {}

        backend = getattr(tokenizer, "backend_tokenizer", None)  # the Rust tokenizer: ~3x less overhead per call
        if backend is not None:
            def encode(text: str) -> list[tuple[int, int]]:
                # transformers leaves the last call's padding/truncation on the backend (and sets its own on
                # every call, so clearing them here disturbs nothing)
                if backend.truncation is not None or backend.padding is not None:
                    backend.no_truncation()
                    backend.no_padding()
                return backend.encode(text, add_special_tokens=False).offsets
        else:
            def encode(text: str) -> list[tuple[int, int]]:
                return tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        self._encode = encode
        cache: dict[str, int] = {}  # the splitter measures most pieces twice (split, then merge)

        def length(text: str) -> int:
            n = cache.get(text)
            if n is None:
                if len(cache) > 100_000:
                    cache.clear()
                n = cache[text] = len(encode(text))
            return n

        self._length = length

        self.splitters = {
            fmt: RecursiveCharacterTextSplitter(
                separators=seps, is_separator_regex=True, keep_separator=True,
                chunk_size=self.body_tokens, chunk_overlap=settings.overlap, length_function=length)
            for fmt, seps in _SEPARATORS.items()
        }

    def _hard_cut(self, text: str) -> list[tuple[str, int, int]]:
        """(piece, char offset, tokens): cut at token boundaries when a piece is still too long."""
        offsets = self._encode(text)
        size, overlap = self.body_tokens, self.settings.overlap
        if len(offsets) <= size:
            return [(text, 0, len(offsets))]
        pieces = []
        step = size - overlap
        for start in range(0, len(offsets), step):
            window = offsets[start:start + size]
            begin, end = window[0][0], window[-1][1]
            pieces.append((text[begin:end], begin, len(window)))
            if start + size >= len(offsets):
                break
        return pieces

    def split(self, section: Section) -> list[dict[str, Any]]:
        text = section.text
        splitter = self.splitters.get(section.fmt, self.splitters["text"])
        line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        marks = headings(text, section.fmt)
        mark_lines = [m[0] for m in marks]
        chunks = []
        cursor = -1
        for piece in splitter.split_text(text):
            start = text.find(piece, cursor + 1)
            if start < 0:
                start = max(text.find(piece), 0)
            cursor = start
            for sub, offset, tokens in self._hard_cut(piece):
                if not sub.strip():
                    continue
                at = start + offset
                line_index = bisect.bisect_right(line_starts, at) - 1
                h = bisect.bisect_right(mark_lines, line_index) - 1
                heading = marks[h][1] if h >= 0 else (section.title or "")
                if section.line_map is not None:
                    line = section.line_map[min(line_index, len(section.line_map) - 1)]
                else:
                    line = section.first_line + line_index
                context = self._clip(heading)
                record = {"text": sub, "context": context, "line": line, "page": section.page,
                          "heading": heading, "doc": section.doc}
                record["tokens"] = self._length(context) + tokens if context else tokens
                if context and record["tokens"] >= self.settings.chunk_tokens - 2:  # near the limit: count exactly
                    record["tokens"] = len(self._encode(embed_text(record)))
                if record["tokens"] > self.settings.chunk_tokens:  # a tokenizer that merges across the newline
                    record["context"], record["tokens"] = "", tokens
                chunks.append(record)
        # A chunk that is only a heading ("# Billing" cut off from a section too long to join it) says nothing
        # the next chunk's heading trail does not: drop it, unless it is all the section has.
        kept = [c for c in chunks if not _only_headings(c["text"], section.fmt)]
        return kept or chunks

    def _clip(self, heading: str) -> str:
        """The heading trail, keeping its most specific end when it is longer than HEADING_TOKENS."""
        if not heading:
            return ""
        if heading in self._clipped:
            return self._clipped[heading]
        offsets = self._encode(heading)
        clipped = heading if len(offsets) <= HEADING_TOKENS else heading[offsets[-HEADING_TOKENS][0]:]
        self._clipped[heading] = clipped
        return clipped


def _only_headings(text: str, fmt: str) -> bool:
    lines = text.split("\n")
    marks = {i for i, _ in headings(text, fmt)}
    return not any(line.strip() and i not in marks and not _RST_UNDERLINE.match(line)
                   for i, line in enumerate(lines))
