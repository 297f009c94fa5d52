"""Continued pretraining (CPT): more next-token training on a domain corpus, read top to bottom.

    corpus files ─► pieces (a jsonl row, or ~4 KB of a .txt/.md file cut at a blank line)
                 ─► held-out pieces (stable hash, ≈ eval_fraction, capped) ─► domain eval blocks
                 ─► the rest: tokenize, append the document separator, pack into fixed blocks of max_length
                    (datasets.IterableDataset over a generator: nothing but the current piece is in memory)
                 ─► transformers Trainer: causal-LM loss, cosine schedule with warmup, checkpoints
                    every save_steps, bf16 + SDPA/flash attention + gradient checkpointing on a GPU, fp32 on CPU
                 ─► callbacks: the forgetting monitor (trainers/forgetting.py), tokens/s and MFU
                    (trainers/throughput.py), and the data cursor that makes --resume exact.

Why transformers' Trainer and not TRL's SFTTrainer in pretraining mode: SFTTrainer packs with `Dataset.map`
(the whole corpus materialised, then skipped through on resume) and its import costs ~12 s; CPT needs a
streamed packer whose position is part of the checkpoint, which is ~100 lines on top of the plain Trainer.
The Trainer still owns the loop, the optimizer, the schedule, mixed precision, checkpoints and the
distributed wrapping that accelerate (DDP / FSDP / DeepSpeed) sets up from the launch config.

Resume is exact: every block the stream yields is numbered, and the stream remembers where each block started
(epoch, file, byte offset of the piece, token offset in it). A checkpoint at optimizer step s stores the
cursor of block s × global_batch in trainer_state.json (written atomically with the rest of the Trainer state),
and --resume opens that file at that byte offset: consumed blocks are neither re-read nor trained twice.
On several processes only rank 0 reads the stream (accelerate dispatches slices of each global batch).

The document separator is `<|endoftext|>` when the tokenizer has it, else the tokenizer's EOS, or
settings.eos_token when set: never a chat end-of-turn token such as <|im_end|>, which would teach the
model to stop mid-text.

Entry points: `train_cpt(settings, corpus, out_dir)`, the engine `run_step(step, ctx)`,
`python -m trainers.cpt --job cpt_job.json` (what `accelerate launch` runs), and `pretrained_tiny_path()`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from rung.core.errors import RungError
from rung.core.resolve import step_settings
from rung.core.fileio import atomic_write_json, atomic_write_text
from rung.core.settings import CPTSettings, to_dict

CORPUS_SUFFIXES = (".txt", ".md", ".jsonl")
PIECE_BYTES = 4096            # a .txt/.md file is read in pieces of ~4 KB, cut at blank lines
DATA_PLAN = "data_plan.json"  # the corpus plan (files, held-out pieces, block counts), cached per run dir
JOB_FILE = "cpt_job.json"     # what a launched worker reads: settings, corpus, out_dir, resume
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
        else:
            problems.append(f"{path}: corpus path does not exist")
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
    for offset, text, doc_end, _ in _pieces(path, start):
        yield offset, text, doc_end


def _pieces(path: Path, start: int = 0) -> Iterator[tuple[int, str, bool, int]]:
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
            if lowest is None or h < lowest[0]:
                lowest = (h, index, offset, n)
            if h < settings.eval_fraction and eval_tokens < eval_cap:
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
            piece = next(_pieces(self.files[file_index], offset), None)
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


# ─────────────────────────────────────────── checkpoints ───────────────────────────────────────────


def _checkpoint_state(folder: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return None
    cursor = (state.get("stateful_callbacks") or {}).get("DataCursorCallback")
    if not isinstance(cursor, dict) or not (cursor.get("attributes") or {}).get("cursor"):
        return None
    return state


def last_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint under out_dir/checkpoints: trainer state and data cursor both written
    (trainer_state.json is the Trainer's last write, so a run killed mid-save falls back one checkpoint)."""
    from rung.trainers.common import checkpoint_dir

    candidates = []
    for folder in checkpoint_dir(Path(out_dir)).glob("checkpoint-*"):
        suffix = folder.name.split("-", 1)[1]
        if suffix.isdigit() and _checkpoint_state(folder) is not None:
            candidates.append((int(suffix), folder))
    return max(candidates)[1] if candidates else None


def _callbacks(stream: BlockStream, global_batch: int):
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState

    class DataCursorCallback(TrainerCallback, ExportableState):
        """Stores, in every checkpoint's trainer_state.json, where the next unread block starts."""

        trainer_state = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.trainer_state = state

        def on_step_end(self, args, state, control, **kwargs):
            self.trainer_state = state
            consumed = state.global_step * global_batch
            for key in [k for k in stream.cursors if k < consumed]:
                del stream.cursors[key]  # positions behind every future checkpoint: keep memory flat

        def state(self) -> dict[str, Any]:
            # optimizer step s has consumed s × global_batch blocks: the next one is block s × global_batch
            consumed = self.trainer_state.global_step * global_batch if self.trainer_state else 0
            return {"args": {}, "attributes": {"cursor": stream.cursors.get(consumed), "global_batch": global_batch}}

    return DataCursorCallback()


# ─────────────────────────────────────────── the run ───────────────────────────────────────────


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def training_arguments(settings: CPTSettings, out_dir: Path, *, max_steps: int, on_gpu: bool,
                       fsdp_activation_checkpointing: bool = False):
    """CPTSettings → transformers TrainingArguments (the one builder; rung-only fields stay out)."""
    from transformers import TrainingArguments

    from rung.trainers.common import checkpoint_dir, detect_device, device_args

    device = device_args(settings, detect_device())  # CPU: use_cpu=True, bf16=False (fp32)
    checkpointing = settings.gradient_checkpointing
    if checkpointing is None:
        checkpointing = on_gpu  # ~30% more compute for activations that no longer grow with depth
    if fsdp_activation_checkpointing:
        checkpointing = False  # FSDP does it itself; both at once is an error in the Trainer
    eval_on = settings.eval_strategy != "no"
    return TrainingArguments(
        output_dir=str(checkpoint_dir(out_dir)),
        max_steps=max_steps,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        per_device_eval_batch_size=settings.per_device_eval_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=settings.warmup_ratio,  # transformers 5: a float < 1 is a fraction of max_steps
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        gradient_checkpointing=bool(checkpointing),
        gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        **device,
        torch_compile=bool(settings.torch_compile),
        seed=settings.seed,
        eval_strategy=settings.eval_strategy,
        eval_steps=settings.eval_steps if eval_on else None,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        save_strategy=settings.save_strategy,
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        remove_unused_columns=False,  # the collator drops the block index itself
        ignore_data_skip=True,        # the data cursor positions the stream; never skip by re-reading
        dataloader_num_workers=0,     # the stream's cursors live in this process
        report_to="none",
        ddp_find_unused_parameters=False,
        disable_tqdm=True,
    )


def _load_model(settings: CPTSettings, on_gpu: bool):
    import torch
    from rung.core.models import load_model_and_tokenizer

    if settings.adapter not in ("full", "lora", "qlora"):
        raise RungError(f'adapter "{settings.adapter}" is not one of full, lora, qlora')
    bf16_gpu = on_gpu and settings.bf16 is not False and torch.cuda.is_bf16_supported()
    # full: fp32 master weights, bf16 autocast (mixed precision). LoRA: the frozen base can sit in bf16.
    dtype = torch.bfloat16 if (bf16_gpu and settings.adapter in ("lora", "qlora")) else torch.float32
    model, tokenizer = load_model_and_tokenizer(
        settings.model_name_or_path, trust_remote_code=settings.trust_remote_code, dtype=dtype,
        quantization="4bit" if settings.adapter == "qlora" else None)
    if on_gpu:
        attn = "sdpa"
        try:
            from transformers.utils import is_flash_attn_2_available

            if bf16_gpu and is_flash_attn_2_available():
                attn = "flash_attention_2"
        except ImportError:
            pass
        if hasattr(model, "set_attn_implementation"):
            try:
                model.set_attn_implementation(attn)
            except (ValueError, ImportError):
                model.set_attn_implementation("sdpa")
    if settings.adapter in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        if settings.adapter == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        tied = bool(getattr(model.config, "tie_word_embeddings", False)) and bool(settings.lora_modules_to_save)
        config = LoraConfig(
            r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
            target_modules=settings.lora_target_modules, modules_to_save=settings.lora_modules_to_save,
            ensure_weight_tying=tied,  # trainable embeddings on a tied model stay one matrix (PEFT #2777)
            task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
    return model, tokenizer


def _write_loss_png(log_history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in log_history if "loss" in r]
    domain = [(r["step"], r["eval_domain_loss"]) for r in log_history if "eval_domain_loss" in r]
    general = [(r["step"], r["eval_general_loss"]) for r in log_history if "eval_general_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for series, label in ((train, "train loss"), (domain, "held-out domain"), (general, "general text")):
        if series:
            ax.plot(*zip(*series), label=label, marker="." if len(series) < 30 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("continued pretraining")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def train_cpt(settings: CPTSettings, corpus: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
              resume: bool = False, general_text: str | os.PathLike | None = None,
              callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Continue pretraining settings.model_name_or_path on `corpus`; writes out_dir/model and returns metrics.

    Works as one process or as each process of an `accelerate launch` (see trainers/launch.py).
    `callbacks`: extra transformers TrainerCallbacks (the benchmark times steps with one).
    """
    from accelerate import PartialState

    from rung.trainers import forgetting, throughput
    from rung.trainers.common import announce_config, quiet_libraries, resolved_config, write_metrics

    quiet_libraries()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    on_gpu = _on_gpu()
    state = PartialState(cpu=not on_gpu)
    world = state.num_processes
    files = corpus_files(corpus)

    checkpoint = last_checkpoint(out_dir)
    if checkpoint is not None and not resume:
        raise RungError(f"{out_dir} already holds {checkpoint.name}: pass --resume to continue that run, "
                        "or choose another --out folder")

    memory = None
    if world == 1:  # one process: the estimator's figure against this device, before any weight loads
        from rung.trainers.common import detect_device, memory_check
        from rung.core.models import resolve_model

        memory = memory_check(resolve_model(settings.model_name_or_path), settings, method="cpt", tokens=0,
                              seq_len=settings.max_length, device=detect_device(), echo=print)
    model, tokenizer = _load_model(settings, on_gpu)
    sep = separator_id(tokenizer, settings.eos_token)
    with state.main_process_first():  # rank 0 plans the corpus once; the others read its data_plan.json
        plan = load_or_plan(files, tokenizer, settings, sep, out_dir, must_match=checkpoint is not None)
    if plan["train_blocks"] == 0:
        raise RungError(f"the corpus has {plan['train_tokens']} training tokens, less than one block of "
                        f"max_length={settings.max_length}: lower --max-length or add text")

    # global batch = per-device batch × processes × accumulation: 4 × 8 GPUs × 4 = 128 blocks per step
    global_batch = settings.per_device_train_batch_size * world * settings.gradient_accumulation_steps
    if settings.max_steps > 0:
        max_steps = settings.max_steps
    else:  # e.g. 1 epoch × 1,200,000 blocks / 128 = 9,375 steps
        max_steps = max(1, math.ceil(settings.num_train_epochs * plan["train_blocks"] / global_batch))

    cursor = start_cursor()
    if checkpoint is not None:
        saved = _checkpoint_state(checkpoint)["stateful_callbacks"]["DataCursorCallback"]["attributes"]
        if saved["global_batch"] != global_batch:
            raise RungError(f"{checkpoint}: it was trained with a global batch of {saved['global_batch']} blocks, "
                            f"this run has {global_batch}; resume with the same batch size × processes × "
                            "accumulation steps")
        cursor = saved["cursor"]

    from datasets import Dataset, IterableDataset

    stream = BlockStream(plan, tokenizer, settings.seed)
    train_dataset = IterableDataset.from_generator(stream.generate, gen_kwargs={"start": cursor})
    domain = held_out_blocks(plan, tokenizer, settings.max_eval_samples)
    general = forgetting.general_blocks(tokenizer, plan["block_size"], settings.max_eval_samples, sep,
                                        general_text)
    eval_dataset = {"general": Dataset.from_dict({"input_ids": general})}
    if domain:  # eval_fraction=0 holds nothing out
        eval_dataset = {"domain": Dataset.from_dict({"input_ids": domain}), **eval_dataset}

    fsdp_ckpt = os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "false").lower() == "true"
    args = training_arguments(settings, out_dir, max_steps=max_steps, on_gpu=on_gpu,
                              fsdp_activation_checkpointing=fsdp_ckpt)
    tokens_per_step = global_batch * plan["block_size"]
    meter = throughput.ThroughputCallback(tokens_per_step=tokens_per_step, model=model,
                                          adapter=settings.adapter, world_size=world)
    monitor = forgetting.ForgettingMonitor(warn_ratio=settings.general_ppl_warn_ratio)
    collator = BlockCollator()

    from transformers import Trainer

    trainer = Trainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      data_collator=collator, processing_class=tokenizer,
                      callbacks=[_callbacks(stream, global_batch), monitor, meter, *callbacks])
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # the meter and the monitor print one line per log instead
    trainer.remove_callback(ProgressCallback)
    if state.is_main_process:
        announce_config(resolved_config(
            settings, engine="cpt", corpus=[str(c) for c in corpus], corpus_files=len(files),
            general_text=str(general_text) if general_text else "builtin: held-out Python help topics",
            separator=tokenizer.convert_ids_to_tokens(sep), max_steps=max_steps, global_batch_blocks=global_batch,
            processes=world, resume_from=str(checkpoint) if checkpoint else None), out_dir, print)
        print(f"rung cpt: {plan['train_tokens']:,} training tokens in {plan['train_blocks']:,} blocks of "
              f"{plan['block_size']}, {len(domain)} held-out domain blocks, {len(general)} general blocks; "
              f"{max_steps} steps × {global_batch} blocks ({world} process{'es' if world > 1 else ''})"
              + (f"; resuming from {checkpoint.name} at block {cursor['block']}" if checkpoint else ""),
              flush=True)
    monitor.trainer = trainer  # runs the "before" evaluation at the start of training (see forgetting.py)
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    train_seconds = time.perf_counter() - started
    evaluated = forgetting.forgetting_table(trainer.state.log_history)
    if not evaluated or evaluated[-1]["step"] != trainer.state.global_step:
        trainer.evaluate()  # "after" (unless the last step's evaluation already ran)

    model_dir = out_dir / MODEL_SUBDIR
    if settings.adapter == "full":
        trainer.save_model(str(model_dir))  # gathers FSDP / ZeRO-3 shards; safetensors
    else:
        trainer.save_model(str(out_dir / "adapter"))
    state.wait_for_everyone()
    for folder in (model_dir, out_dir / "adapter"):  # the Trainer's pickled arguments: not part of a model
        (folder / "training_args.bin").unlink(missing_ok=True)

    history = trainer.state.log_history
    table = forgetting.forgetting_table(history)
    warnings = forgetting.warnings_for(table, settings.general_ppl_warn_ratio)
    losses = [r["loss"] for r in history if "loss" in r]
    result: dict[str, Any] = {
        "model_dir": str(model_dir),
        "global_step": trainer.state.global_step,
        "max_steps": max_steps,
        "global_batch_blocks": global_batch,
        "block_size": plan["block_size"],
        "processes": world,
        "resumed_from": checkpoint.name if checkpoint else None,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_loss": output.training_loss,
        "train_tokens_in_corpus": plan["train_tokens"],
        "tokens_trained": (trainer.state.global_step - (int(checkpoint.name.split("-")[1]) if checkpoint else 0))
        * tokens_per_step,
        "train_seconds": round(train_seconds, 2),
        "throughput": meter.summary(),
        "forgetting": table,
        "warnings": warnings,
        "data": {"first_block_read": stream.first_block, "blocks_read": stream.blocks_read,
                 "start_cursor": cursor, "blocks_collated": len(collator.seen)},
        "memory": memory,
    }
    if state.is_main_process:
        if settings.adapter != "full":
            _merge_adapter(settings, out_dir / "adapter", model_dir)
        write_metrics(out_dir, history, result)
        atomic_write_text(out_dir / "report.md", report_markdown(result))
        _write_loss_png(history, out_dir / "loss.png")
        for line in warnings:
            print(f"WARNING: {line}", file=sys.stderr, flush=True)
    atomic_write_json(out_dir / "ranks" / f"rank{state.process_index}.json",
                      {"rank": state.process_index, "global_step": trainer.state.global_step,
                       "blocks_collated": len(collator.seen)})
    result["blocks_seen"] = list(collator.seen)
    state.wait_for_everyone()
    return result


def _merge_adapter(settings: CPTSettings, adapter_dir: Path, model_dir: Path) -> None:
    """Fold the LoRA adapter into a fresh fp32 copy of the base so later steps get a plain model folder."""
    from peft import PeftModel
    from rung.core.models import load_model_and_tokenizer

    base, tokenizer = load_model_and_tokenizer(settings.model_name_or_path,
                                               trust_remote_code=settings.trust_remote_code)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    staging = Path(tempfile.mkdtemp(dir=model_dir.parent, prefix=".model-"))
    merged.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    os.replace(staging, model_dir)


def report_markdown(result: dict[str, Any]) -> str:
    from rung.trainers.forgetting import table_markdown

    tp = result["throughput"]
    lines = [
        "## Continued pretraining",
        "",
        f"- {result['global_step']} optimizer steps × {result['global_batch_blocks']} blocks of "
        f"{result['block_size']} tokens on {result['processes']} process(es)"
        + (f", resumed from {result['resumed_from']}" if result["resumed_from"] else ""),
        f"- train loss {result['first_loss']:.3f} → {result['last_loss']:.3f}" if result["first_loss"] else "",
        f"- throughput {tp.get('tokens_per_second', 0):,.0f} tokens/s; MFU "
        + (f"{tp['mfu']:.1%}" if tp.get("mfu") is not None else f"n/a ({tp.get('mfu_note', 'CPU')})"),
        "",
        "### Forgetting monitor (perplexity; lower is better)",
        "",
        table_markdown(result["forgetting"]),
    ]
    lines += [""] + [f"> **Warning:** {w}" for w in result["warnings"]]
    return "\n".join(line for line in lines if line is not None) + "\n"


# ─────────────────────────────────────────── engine entry ───────────────────────────────────────────


def run_step(step: dict[str, Any], ctx) -> Any:
    """Engine `cpt`: continue pretraining on the plan's corpus; outputs {"model_dir": ...}."""
    from rung.core.protocol import StepResult
    from rung.trainers import common

    settings = step_settings(CPTSettings, step, ctx)
    corpus = ctx.data_paths("corpus")
    if not corpus:
        raise RungError("the cpt step needs data.corpus in plan.yaml (a folder or .txt/.md/.jsonl files)")
    nodes = int(ctx.nodes or 1)
    if (ctx.gpus and ctx.gpus > 1) or nodes > 1:
        from rung.trainers import launch

        launch.launch_cpt(settings, corpus, ctx.run_dir, gpus=max(1, ctx.gpus), nodes=nodes,
                          node_rank=int(ctx.node_rank or 0), main_address=ctx.main_address,
                          main_port=int(ctx.main_port or launch.DEFAULT_PORT),
                          resume=ctx.resume)
        result = json.loads((Path(ctx.run_dir) / "metrics.json").read_text())
    else:
        result = train_cpt(settings, corpus, ctx.run_dir, resume=ctx.resume)
        result.pop("blocks_seen", None)
    metrics = {k: result[k] for k in ("global_step", "first_loss", "last_loss", "train_seconds")}
    metrics.update({"tokens_per_second": result["throughput"].get("tokens_per_second"),
                    "mfu": result["throughput"].get("mfu")})
    if result["forgetting"]:
        first, last = result["forgetting"][0], result["forgetting"][-1]
        metrics.update({"domain_ppl_before": first["domain_ppl"], "domain_ppl_after": last["domain_ppl"],
                        "general_ppl_before": first["general_ppl"], "general_ppl_after": last["general_ppl"]})
    return StepResult(outputs={"model_dir": result["model_dir"], "report": str(Path(ctx.run_dir) / "report.md"),
                               "loss_plot": str(Path(ctx.run_dir) / "loss.png")},
                      metrics=metrics, summary=report_markdown(result))


# ─────────────────────────────────────── the demo's stage-1 base model ───────────────────────────────────────

# Everything that decides builtin:tiny-base's bytes (with builtin:tiny's own spec): change it, the cache key changes.
TINY_BASE_SPEC: dict[str, Any] = {
    "version": 1,
    "settings": {"adapter": "full", "max_length": 128, "per_device_train_batch_size": 8,
                 "learning_rate": 2e-3, "warmup_ratio": 0.05, "num_train_epochs": 3.0, "weight_decay": 0.01,
                 "seed": 0, "eval_strategy": "no", "save_strategy": "no", "logging_steps": 25,
                 "max_eval_samples": 16, "eval_fraction": 0.0},
}


def pretrained_tiny_path() -> Path:
    """builtin:tiny after a short pretraining on Python's help topics (~1–2 min on 2 cores, once, cached).

    It writes English-looking text but knows no format: the demo's "stage 1" base model. The topics it
    trains on exclude trainers.forgetting's general-text slice, so that slice stays held out.
    """
    from rung.trainers import forgetting
    from rung.core.models import TINY_SPEC, _spec_key, builtin_tiny_path, cache_root, cached_build

    key = _spec_key({"tiny": TINY_SPEC, "base": TINY_BASE_SPEC, "topics": forgetting.pretraining_topic_names()})

    def build(staging: Path) -> Path:
        corpus = staging / "corpus"
        corpus.mkdir()
        for name, text in forgetting.pretraining_topics():
            (corpus / f"{name}.txt").write_text(text, encoding="utf-8")
        settings = CPTSettings(model_name_or_path=str(builtin_tiny_path()), **TINY_BASE_SPEC["settings"])
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a 128-wide model gains nothing from a second thread, and loses 4-40x
        try:                      # when that core is busy (ENVIRONMENT.md)
            result = train_cpt(settings, [corpus], staging / "run")
        finally:
            torch.set_num_threads(threads)
        model = Path(result["model_dir"])
        (model / "RUNG_BUILTIN.md").write_text(
            "builtin:tiny-base — builtin:tiny after a short pretraining on Python's help topics "
            f"(PSF licence), by rung. Train loss {result['first_loss']:.2f} → {result['last_loss']:.2f}.\n"
            f"spec: {json.dumps(TINY_BASE_SPEC)}\n")
        return model

    return cached_build(cache_root() / f"builtin-tiny-base-{key}", build, "tiny-base")


# ─────────────────────────────────────── worker entry (accelerate launch) ───────────────────────────────────────


def write_job(out_dir: Path, settings: CPTSettings, corpus: Sequence[Path], *, resume: bool,
              general_text: str | os.PathLike | None = None) -> Path:
    path = Path(out_dir) / JOB_FILE
    atomic_write_json(path, {"settings": to_dict(settings), "corpus": [str(Path(c).resolve()) for c in corpus],
                             "out_dir": str(Path(out_dir).resolve()), "resume": resume,
                             "general_text": str(general_text) if general_text else None})
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m trainers.cpt --job cpt_job.json`: one process of a (possibly launched) CPT run."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m trainers.cpt", description=main.__doc__)
    parser.add_argument("--job", required=True, help="cpt_job.json written by `rung train cpt`")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    job = json.loads(Path(args.job).read_text())
    fields = {f.name for f in dataclasses.fields(CPTSettings)}
    settings = CPTSettings(**{k: v for k, v in job["settings"].items() if k in fields})
    try:
        train_cpt(settings, job["corpus"], job["out_dir"], resume=job["resume"] or args.resume,
                  general_text=job.get("general_text"))
    except RungError as error:
        print(f"Error: {error.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
