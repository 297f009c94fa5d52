"""CPT data: corpus files -> pieces -> held-out split -> tokens packed into fixed blocks, streamed.

A .txt/.md file is read in pieces of ~PIECE_BYTES cut at blank lines, a .jsonl file a row at a time. The
stream's cursor (epoch, file, byte offset, token offset) is what makes --resume exact (trainers/cpt/loop.py saves it).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_json
from rung.core.inputs import source_problem
from rung.core.settings import CPTSettings

CORPUS_SUFFIXES = (".txt", ".md", ".jsonl")
PIECE_BYTES = 4096            # a .txt/.md file is read in pieces of ~4 KB, cut at blank lines
DATA_PLAN = "data_plan.json"  # the corpus plan (files, held-out pieces, block counts), cached per run dir
MODEL_SUBDIR = "model"


# ─────────────────────────────────────────────── corpus ───────────────────────────────────────────────


def corpus_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Every .txt/.md/.jsonl file under the given files and folders, sorted; all problems reported at once."""
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                problems.append(f"{path}: no .txt, .md or .jsonl files in this folder")
            files += found
        elif path.is_file():
            if path.suffix.lower() not in CORPUS_SUFFIXES:
                problems.append(f"{path}: unsupported corpus file (use .txt, .md, or .jsonl with a \"text\" field)")
            else:
                files.append(path)
        else:  # missing, a FIFO or device (never opened: a FIFO would block the read), a symlink loop
            problems.append(source_problem(path, "corpus path") or f"{path}: corpus path is not a file or folder")
    if not paths:
        problems.append("no corpus given: pass --corpus PATH (a folder or .txt/.md/.jsonl files)")
    if problems:
        raise RungError(problems)
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return unique


def read_pieces(path: Path, start: int = 0) -> Iterator[tuple[int, str, bool]]:
    """(byte offset, text, ends a document) for each piece of a corpus file, from byte `start` on.

    .jsonl: one piece per row (its "text"), each a whole document. .txt/.md: the file is one document, read
    in pieces of ~PIECE_BYTES cut at blank lines (or at any line past 4×PIECE_BYTES), so a file larger than
    memory streams. Piece boundaries depend only on the bytes from a piece's start, so reading from a piece's
    offset reproduces the same pieces.
    """
    for offset, text, doc_end, _ in read_pieces_with_ends(path, start):
        yield offset, text, doc_end


def read_pieces_with_ends(path: Path, start: int = 0) -> Iterator[tuple[int, str, bool, int]]:
    """read_pieces, with the byte offset where each piece ends (where the next one starts)."""
    jsonl = path.suffix.lower() == ".jsonl"
    with open(path, "rb") as handle:
        handle.seek(min(start, os.fstat(handle.fileno()).st_size))
        offset = start
        if jsonl:
            for line in handle:
                here, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as error:
                    raise RungError(f"{path} (byte {here}): not valid JSON: {error}") from None
                text = row.get("text") if isinstance(row, dict) else None
                if not isinstance(text, str):
                    raise RungError(f'{path} (byte {here}): each line needs a "text" string field')
                if text:
                    yield here, text, True, offset
            return
        chunk: list[bytes] = []
        size, piece_start = 0, handle.tell()
        for line in handle:
            chunk.append(line)
            size += len(line)
            if (size >= PIECE_BYTES and not line.strip()) or size >= 4 * PIECE_BYTES:
                yield piece_start, b"".join(chunk).decode("utf-8", errors="replace"), False, piece_start + size
                piece_start += size
                chunk, size = [], 0
        if start > piece_start:  # started past the end: the closing piece below was already read
            return
        # the last piece closes the document (it may be empty: the separator still follows the file); it
        # "ends" one byte past the file, so reading on from there yields nothing
        yield piece_start, b"".join(chunk).decode("utf-8", errors="replace"), True, piece_start + size + 1


def _unit_hash(key: str, offset: int) -> float:
    """A stable number in [0, 1) per piece: decides held-out membership independent of order and seed."""
    digest = hashlib.sha1(f"{key}@{offset}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def separator_id(tokenizer, eos_token: str | None = None) -> int:
    """The token placed between documents: eos_token if set, else <|endoftext|> if present, else EOS."""
    vocab = tokenizer.get_vocab()
    if eos_token:
        if eos_token not in vocab:
            raise RungError(f'eos_token "{eos_token}" is not in the tokenizer\'s vocabulary')
        return vocab[eos_token]
    if "<|endoftext|>" in vocab:
        return vocab["<|endoftext|>"]
    if tokenizer.eos_token_id is None:
        raise RungError("the tokenizer has no EOS token and no <|endoftext|>: set --set eos_token=<token>")
    return tokenizer.eos_token_id


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _fingerprint(files: list[Path], tokenizer, settings: CPTSettings, sep: int) -> str:
    parts = [[str(f), f.stat().st_size, int(f.stat().st_mtime)] for f in files]
    meta = [parts, tokenizer.name_or_path, len(tokenizer), settings.max_length, settings.eval_fraction,
            settings.max_eval_samples, sep, PIECE_BYTES]
    return hashlib.sha256(json.dumps(meta, default=str).encode()).hexdigest()[:16]


def plan_corpus(files: list[Path], tokenizer, settings: CPTSettings, sep: int) -> dict[str, Any]:
    """One pass over the corpus: which pieces are held out, and how many train blocks the rest packs into.

    Held-out: pieces whose stable hash < eval_fraction, in file order, until max_eval_samples blocks of
    tokens are collected; a corpus too small to pick any holds out its lowest-hash piece. Costs one
    tokenization pass (fast tokenizers do ~1M tokens/s); cached in the run folder as data_plan.json.
    """
    block = settings.max_length
    eval_cap = settings.max_eval_samples * block
    held_out: list[list] = []  # [file index, offset]
    eval_tokens = train_tokens = 0
    lowest: tuple[float, int, int, int] | None = None
    for index, path in enumerate(files):
        key = f"{path.parent.name}/{path.name}"
        for offset, text, doc_end in read_pieces(path):
            n = len(_encode(tokenizer, text)) + (1 if doc_end else 0)
            h = _unit_hash(key, offset)
            replayed = path.parent.name == "replay_corpus"  # trainers/replay.py: general text, never domain eval
            if (lowest is None or h < lowest[0]) and not replayed:
                lowest = (h, index, offset, n)
            if h < settings.eval_fraction and eval_tokens < eval_cap and not replayed:
                held_out.append([index, offset])
                eval_tokens += n
            else:
                train_tokens += n
    if not held_out and lowest is not None and settings.eval_fraction > 0:
        held_out.append([lowest[1], lowest[2]])
        eval_tokens, train_tokens = lowest[3], train_tokens - lowest[3]
    return {
        "files": [str(f) for f in files],
        "held_out": held_out,
        "train_tokens": train_tokens,
        "eval_tokens": eval_tokens,
        "train_blocks": train_tokens // block,
        "block_size": block,
        "separator_id": sep,
    }


def load_or_plan(files: list[Path], tokenizer, settings: CPTSettings, sep: int, out_dir: Path,
                 *, must_match: bool) -> dict[str, Any]:
    """The cached corpus plan when it matches the corpus and settings; else a fresh one (written atomically)."""
    path = out_dir / DATA_PLAN
    fingerprint = _fingerprint(files, tokenizer, settings, sep)
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("fingerprint") == fingerprint:
            return cached
        if must_match:
            raise RungError(f"{out_dir}: the corpus, tokenizer or block settings changed since this run started, "
                            "so its checkpoints' data position no longer applies; start a new --out folder")
    plan = plan_corpus(files, tokenizer, settings, sep)
    plan["fingerprint"] = fingerprint
    atomic_write_json(path, plan)
    return plan


INTERLEAVE = 8  # files read side by side, a piece from each in turn: no long run of a single source


class BlockStream:
    """Packs the non-held-out pieces into blocks of `block_size` tokens, forever (epoch after epoch).

    Each epoch visits the files in a seeded order that changes every epoch, INTERLEAVE files at a time, one
    piece (~4 KB or a jsonl row) from each in turn; when a file ends, the next file in the order takes its
    slot. So a corpus of a few big files (forecasts, logs, manuals) is mixed, not learned one file after
    another. Only a file offset per slot is held, so the corpus never has to fit in memory.

    `cursors` maps each block index to where that block starts: the reading state (epoch, the slots' files and
    byte offsets, whose turn, the next file in the order) before the piece the block starts in, plus how many
    of that piece's tokens earlier blocks used. A checkpoint stores one; `generate(cursor)` resumes there.
    """

    def __init__(self, plan: dict[str, Any], tokenizer, seed: int):
        self.files = [Path(f) for f in plan["files"]]
        self.held_out = {(i, o) for i, o in plan["held_out"]}
        self.block = plan["block_size"]
        self.sep = plan["separator_id"]
        self.tokenizer = tokenizer
        self.seed = seed
        self.cursors: dict[int, dict[str, Any]] = {}
        self.first_block: int | None = None  # the first block index this process produced
        self.blocks_read = 0

    def order(self, epoch: int) -> list[int]:
        if getattr(self, "_order", (None,))[0] != epoch:
            order = list(range(len(self.files)))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            self._order = (epoch, order)
        return self._order[1]

    def epoch_start(self, epoch: int) -> dict[str, Any]:
        order = self.order(epoch)
        width = min(INTERLEAVE, len(order))
        return {"epoch": epoch, "slots": [[f, 0] for f in order[:width]], "next": width, "turn": 0}

    def _next_piece(self, state: dict[str, Any]) -> tuple[dict[str, Any], list[int]] | None:
        """Advance `state` (in place) to the next training piece; (the state before it, its tokens), or None
        at the end of the epoch."""
        order = self.order(state["epoch"])
        while state["slots"]:
            state["turn"] %= len(state["slots"])
            file_index, offset = state["slots"][state["turn"]]
            before = {"epoch": state["epoch"], "slots": [list(s) for s in state["slots"]],
                      "next": state["next"], "turn": state["turn"]}
            piece = next(read_pieces_with_ends(self.files[file_index], offset), None)
            if piece is None:  # this file is done: the next file in the order takes the slot, or the slot closes
                if state["next"] < len(order):
                    state["slots"][state["turn"]] = [order[state["next"]], 0]
                    state["next"] += 1
                else:
                    del state["slots"][state["turn"]]
                continue
            piece_offset, text, doc_end, end = piece
            state["slots"][state["turn"]][1] = end
            if (file_index, piece_offset) in self.held_out:
                continue  # same slot again: held-out pieces are skipped, not turns
            state["turn"] += 1
            return before, _encode(self.tokenizer, text) + ([self.sep] if doc_end else [])
        return None

    def generate(self, start: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Blocks from `start` = {"block": index, "state": reading state | None, "token": n} (start_cursor()
        or a checkpoint's cursor). A partial block at the end of an epoch carries on into the next epoch: no
        token is dropped or padded."""
        index = start["block"]
        self.cursors[index] = start
        state = start["state"] or self.epoch_start(0)
        state = {"epoch": state["epoch"], "slots": [list(s) for s in state["slots"]], "next": state["next"],
                 "turn": state["turn"]}
        skip = start["token"]
        buffer: list[int] = []
        while True:
            step = self._next_piece(state)
            if step is None:
                state = self.epoch_start(state["epoch"] + 1)
                continue
            before, ids = step
            at, skip = skip, 0
            while at < len(ids):
                take = ids[at:at + self.block - len(buffer)]
                buffer += take
                at += len(take)
                if len(buffer) == self.block:
                    # block index + 1 starts at token `at` of this piece, read from `before`
                    self.cursors[index + 1] = {"block": index + 1, "state": before, "token": at}
                    if self.first_block is None:
                        self.first_block = index
                    self.blocks_read += 1
                    yield {"input_ids": buffer, "block": index}
                    index += 1
                    buffer = []


def start_cursor() -> dict[str, Any]:
    return {"block": 0, "state": None, "token": 0}


def held_out_blocks(plan: dict[str, Any], tokenizer, max_blocks: int) -> list[list[int]]:
    """The held-out pieces, packed the same way as training blocks (at most max_blocks)."""
    files = [Path(f) for f in plan["files"]]
    block, sep = plan["block_size"], plan["separator_id"]
    tokens: list[int] = []
    for index, offset in plan["held_out"]:
        for piece_offset, text, doc_end in read_pieces(files[index], offset):
            tokens += _encode(tokenizer, text) + ([sep] if doc_end else [])
            break  # only the piece that starts at this offset
        if len(tokens) >= block * max_blocks:
            break
    blocks = [tokens[i:i + block] for i in range(0, len(tokens) - block + 1, block)][:max_blocks]
    if not blocks and tokens:  # a tiny corpus: one short block rather than no eval at all
        blocks = [tokens[:block]]
    return blocks


class BlockCollator:
    """Stacks fixed-length blocks; labels are the inputs (the model shifts them). Nothing is padded, so no
    token is masked: the separator is a real target (DataCollatorForLanguageModeling would mask it out,
    since <|endoftext|> is also the pad token)."""

    def __init__(self):
        self.seen: list[int] = []  # block indices this process collated (tests read it)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if len(self.seen) < 1_000_000:
            self.seen += [f["block"] for f in features if "block" in f]
        ids = torch.tensor([list(f["input_ids"]) for f in features], dtype=torch.long)
        return {"input_ids": ids, "labels": ids.clone()}

