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

Entry points: `train_cpt(settings, corpus, out_dir)`, `cpt_job(settings, corpus)` (the fields of a launched
run's job file) and `pretrained_tiny_path()`. A launched run goes through the shared launcher and worker, as SFT
and DPO do (trainers/launch.py, `python -m rung.trainers.worker --job RUN/cpt_job.json`); the `cpt` engine for
`rung run` is engines/cpt.py.

Files: corpus.py (pieces, split, packing, the stream), loop.py (the Trainer run, the job), base_model.py
(builtin:tiny-base).
"""

from rung.trainers.cpt.base_model import TINY_BASE_SPEC, pretrained_tiny_path
from rung.trainers.cpt.corpus import (PIECE_BYTES, BlockStream, corpus_files, held_out_blocks, plan_corpus,
                                      read_pieces, separator_id, start_cursor)
from rung.trainers.cpt.loop import cpt_job, last_checkpoint, train_cpt, training_arguments

__all__ = ["TINY_BASE_SPEC", "PIECE_BYTES", "BlockStream", "corpus_files", "cpt_job", "held_out_blocks",
           "last_checkpoint", "plan_corpus", "pretrained_tiny_path", "read_pieces", "separator_id", "start_cursor",
           "train_cpt", "training_arguments"]
