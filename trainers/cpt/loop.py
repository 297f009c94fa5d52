"""The CPT training loop: transformers' Trainer over the block stream, checkpoints that carry the data cursor,
the forgetting monitor and throughput, then the model, metrics.json, loss.png and report.md."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_json, atomic_write_text
from rung.core.settings import CPTSettings
from rung.trainers.common import Summary
from rung.trainers.cpt.corpus import (MODEL_SUBDIR, BlockCollator, BlockStream, corpus_files, held_out_blocks,
                                      load_or_plan, separator_id, start_cursor)

# ─────────────────────────────────────────── checkpoints ───────────────────────────────────────────


def checkpoint_state(folder: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return None
    cursor = (state.get("stateful_callbacks") or {}).get("DataCursorCallback")
    if not isinstance(cursor, dict) or not (cursor.get("attributes") or {}).get("cursor"):
        return None
    return state


def last_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint under out_dir/checkpoints: trainer state and data cursor both written."""
    from rung.trainers import common

    return common.last_checkpoint(Path(out_dir), complete=lambda folder: checkpoint_state(folder) is not None)


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

    from rung.trainers.common import checkpoint_dir
    from rung.trainers.device import detect_device, device_args

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
    from rung.trainers.jobs import quant_storage_dtype, weights_sharded

    model, tokenizer = load_model_and_tokenizer(
        settings.model_name_or_path, trust_remote_code=settings.trust_remote_code, dtype=dtype,
        quantization="4bit" if settings.adapter == "qlora" else None,
        quant_storage=quant_storage_dtype() if settings.adapter == "qlora" else None)
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

        if settings.adapter == "qlora" and not weights_sharded():
            # (sharded: it would cast the non-4-bit weights to fp32, and FSDP1 flattens one dtype per unit)
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


# the run's pieces as the phases below hand them on: what was checked, what was loaded, what trains it


@dataclass
class _Inputs:
    state: Any                        # accelerate's PartialState: this process's rank among `world`
    on_gpu: bool
    files: list[Path]                 # the corpus files, the replay text last
    checkpoint: Path | None           # --resume: the checkpoint to continue from


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    sep: int                          # the document separator's token id
    plan: dict[str, Any]              # the corpus plan (corpus.py plan_corpus)
    memory: dict[str, Any] | None


@dataclass
class _Built:
    trainer: Any
    stream: BlockStream
    collator: BlockCollator
    meter: Any                        # throughput.ThroughputCallback
    cursor: dict[str, Any]            # where the stream starts reading
    max_steps: int
    global_batch: int


def train_cpt(settings: CPTSettings, corpus: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
              resume: bool = False, general_text: str | os.PathLike | None = None,
              callbacks: Sequence[Any] = (), show_config: bool = True) -> Summary:
    """Continue pretraining settings.model_name_or_path on `corpus`; writes out_dir/model and returns the summary
    (trainers/common.py Summary, the keys every trainer reports, plus CPT's: forgetting, throughput, data, ...).

    Works as one process or as each process of an `accelerate launch` (trainers/launch.py, trainers/worker.py).
    `callbacks`: extra transformers TrainerCallbacks (the benchmark times steps with one).
    """
    from rung.trainers.common import quiet_libraries

    quiet_libraries()
    out_dir = Path(out_dir)
    inputs = _check_inputs(settings, corpus, out_dir, resume)
    loaded = _load(settings, inputs, out_dir)
    built = _build_trainer(settings, inputs, loaded, out_dir, corpus=corpus, general_text=general_text,
                           callbacks=callbacks, show_config=show_config)
    wall = _train(built.trainer, inputs.checkpoint)
    return _write_outputs(settings, inputs, loaded, built, out_dir, wall=wall)


def _check_inputs(settings: CPTSettings, corpus: Sequence[str | os.PathLike], out_dir: Path,
                  resume: bool) -> _Inputs:
    """Phase 1: replay settings, the corpus files (and the replay text mixed into them), existing checkpoints."""
    from accelerate import PartialState

    from rung.core.fileio import make_dir
    from rung.trainers import replay

    problems = replay.replay_problems(settings.replay, settings.replay_ratio)
    if problems:
        raise RungError(problems)
    make_dir(out_dir, what="output folder")
    on_gpu = _on_gpu()
    state = PartialState(cpu=not on_gpu)
    files = corpus_files(corpus)
    with state.main_process_first():  # rank 0 writes the replay text; the others find it identical
        replay_file, replay_bytes = replay.write_replay_corpus(files, settings.replay, settings.replay_ratio,
                                                               settings.seed, out_dir)
    if replay_file is not None:
        corpus_bytes = sum(f.stat().st_size for f in files)
        if state.is_main_process:
            source = "the builtin help topics" if settings.replay == replay.BUILTIN else settings.replay
            print(f"Replay: {replay_bytes:,} bytes of {source} mixed into {corpus_bytes:,} bytes of corpus "
                  f"({replay_bytes / (corpus_bytes + replay_bytes):.1%} of the text, by bytes)")
        files = files + [replay_file]
    checkpoint = last_checkpoint(out_dir)
    if checkpoint is not None and not resume:
        raise RungError(f"{out_dir} already holds {checkpoint.name}: pass --resume to continue that run, "
                        "or choose another --out folder")
    return _Inputs(state=state, on_gpu=on_gpu, files=files, checkpoint=checkpoint)


def _load(settings: CPTSettings, inputs: _Inputs, out_dir: Path) -> _Loaded:
    """Phase 2: the memory check, the model and tokenizer, the corpus plan (rank 0 plans, the others read it)."""
    memory = None
    if inputs.state.num_processes == 1:  # one process: the estimator's figure against this device, before loading
        from rung.core.models import resolve_model
        from rung.trainers.device import detect_device, memory_check

        memory = memory_check(resolve_model(settings.model_name_or_path), settings, method="cpt", tokens=0,
                              seq_len=settings.max_length, device=detect_device(), echo=print)
    model, tokenizer = _load_model(settings, inputs.on_gpu)
    sep = separator_id(tokenizer, settings.eos_token)
    with inputs.state.main_process_first():  # rank 0 plans the corpus once; the others read its data_plan.json
        plan = load_or_plan(inputs.files, tokenizer, settings, sep, out_dir, must_match=inputs.checkpoint is not None)
    if plan["train_blocks"] == 0:
        raise RungError(f"the corpus has {plan['train_tokens']} training tokens, less than one block of "
                        f"max_length={settings.max_length}: lower --max-length or add text")
    return _Loaded(model=model, tokenizer=tokenizer, sep=sep, plan=plan, memory=memory)


def _steps_and_cursor(settings: CPTSettings, plan: dict[str, Any], world: int,
                      checkpoint: Path | None) -> tuple[int, int, dict[str, Any]]:
    """(global batch in blocks, max_steps, the stream's start cursor: the checkpoint's, else the beginning)."""
    # global batch = per-device batch × processes × accumulation: 4 × 8 GPUs × 4 = 128 blocks per step
    global_batch = settings.per_device_train_batch_size * world * settings.gradient_accumulation_steps
    if settings.max_steps > 0:
        max_steps = settings.max_steps
    else:  # e.g. 1 epoch × 1,200,000 blocks / 128 = 9,375 steps
        max_steps = max(1, math.ceil(settings.num_train_epochs * plan["train_blocks"] / global_batch))
    if checkpoint is None:
        return global_batch, max_steps, start_cursor()
    saved = checkpoint_state(checkpoint)["stateful_callbacks"]["DataCursorCallback"]["attributes"]
    if saved["global_batch"] != global_batch:
        raise RungError(f"{checkpoint}: it was trained with a global batch of {saved['global_batch']} blocks, "
                        f"this run has {global_batch}; resume with the same batch size × processes × "
                        "accumulation steps")
    return global_batch, max_steps, saved["cursor"]


def _build_trainer(settings: CPTSettings, inputs: _Inputs, loaded: _Loaded, out_dir: Path, *,
                   corpus: Sequence[str | os.PathLike], general_text: str | os.PathLike | None,
                   callbacks: Sequence[Any], show_config: bool) -> _Built:
    """Phase 3: the block stream from the cursor, the held-out domain and general blocks, the Trainer with the
    data cursor, the forgetting monitor and the throughput meter; the resolved config printed and saved."""
    from datasets import Dataset, IterableDataset
    from transformers import Trainer

    from rung.trainers import forgetting, throughput
    from rung.trainers.common import remove_progress_bars

    plan, world = loaded.plan, inputs.state.num_processes
    global_batch, max_steps, cursor = _steps_and_cursor(settings, plan, world, inputs.checkpoint)
    stream = BlockStream(plan, loaded.tokenizer, settings.seed)
    train_dataset = IterableDataset.from_generator(stream.generate, gen_kwargs={"start": cursor})
    domain = held_out_blocks(plan, loaded.tokenizer, settings.max_eval_samples)
    general = forgetting.general_blocks(loaded.tokenizer, plan["block_size"], settings.max_eval_samples, loaded.sep,
                                        general_text)
    eval_dataset = {"general": Dataset.from_dict({"input_ids": general})}
    if domain:  # eval_fraction=0 holds nothing out
        eval_dataset = {"domain": Dataset.from_dict({"input_ids": domain}), **eval_dataset}
    fsdp_ckpt = os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "false").lower() == "true"
    args = training_arguments(settings, out_dir, max_steps=max_steps, on_gpu=inputs.on_gpu,
                              fsdp_activation_checkpointing=fsdp_ckpt)
    meter = throughput.ThroughputCallback(tokens_per_step=global_batch * plan["block_size"], model=loaded.model,
                                          adapter=settings.adapter, world_size=world)
    monitor = forgetting.ForgettingMonitor(warn_ratio=settings.general_ppl_warn_ratio)
    collator = BlockCollator()
    trainer = Trainer(model=loaded.model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      data_collator=collator, processing_class=loaded.tokenizer,
                      callbacks=[_callbacks(stream, global_batch), monitor, meter, *callbacks])
    remove_progress_bars(trainer)  # the meter and the monitor print one line per log instead
    if inputs.state.is_main_process:
        _announce(settings, inputs, loaded, out_dir, corpus=corpus, general_text=general_text, max_steps=max_steps,
                  global_batch=global_batch, cursor=cursor, eval_blocks=(len(domain), len(general)),
                  show_config=show_config)
    monitor.trainer = trainer  # runs the "before" evaluation at the start of training (see forgetting.py)
    return _Built(trainer=trainer, stream=stream, collator=collator, meter=meter, cursor=cursor,
                  max_steps=max_steps, global_batch=global_batch)


def _announce(settings: CPTSettings, inputs: _Inputs, loaded: _Loaded, out_dir: Path, *,
              corpus: Sequence[str | os.PathLike], general_text: str | os.PathLike | None, max_steps: int,
              global_batch: int, cursor: dict[str, Any], eval_blocks: tuple[int, int], show_config: bool) -> None:
    """The resolved config (printed and saved as resolved_config.yaml) and one line on the corpus and the steps."""
    from rung.trainers.common import announce_config, resolved_config

    plan, world, checkpoint = loaded.plan, inputs.state.num_processes, inputs.checkpoint
    announce_config(resolved_config(
        settings, engine="cpt", corpus=[str(c) for c in corpus], corpus_files=len(inputs.files),
        general_text=str(general_text) if general_text else "builtin: held-out Python help topics",
        separator=loaded.tokenizer.convert_ids_to_tokens(loaded.sep), max_steps=max_steps,
        global_batch_blocks=global_batch, processes=world, resume_from=str(checkpoint) if checkpoint else None),
        out_dir, print, show=show_config)
    print(f"rung cpt: {plan['train_tokens']:,} training tokens in {plan['train_blocks']:,} blocks of "
          f"{plan['block_size']}, {eval_blocks[0]} held-out domain blocks, {eval_blocks[1]} general blocks; "
          f"{max_steps} steps × {global_batch} blocks ({world} process{'es' if world > 1 else ''})"
          + (f"; resuming from {checkpoint.name} at block {cursor['block']}" if checkpoint else ""),
          flush=True)


def _train(trainer, checkpoint: Path | None) -> float:
    """Phase 4: trainer.train() from the checkpoint, then the "after" evaluation unless the last step ran one.
    Returns the seconds trainer.train() took."""
    from rung.trainers import forgetting
    from rung.trainers.common import run_trainer

    started = time.perf_counter()
    run_trainer(trainer, str(checkpoint) if checkpoint else None)
    wall = time.perf_counter() - started
    evaluated = forgetting.forgetting_table(trainer.state.log_history)
    if not evaluated or evaluated[-1]["step"] != trainer.state.global_step:
        trainer.evaluate()  # "after" (unless the last step's evaluation already ran)
    return wall


def _write_outputs(settings: CPTSettings, inputs: _Inputs, loaded: _Loaded, built: _Built, out_dir: Path, *,
                   wall: float) -> Summary:
    """Phase 5: the model (or the adapter, then merged), metrics.json, report.md, loss.png, each rank's record."""
    from rung.trainers import forgetting
    from rung.trainers.common import plot_curves, save_full_state, write_metrics

    trainer, state = built.trainer, inputs.state
    model_dir = out_dir / MODEL_SUBDIR
    save_full_state(trainer)  # FSDP + QLoRA checkpoints are sharded; the saved adapter is not
    trainer.save_model(str(model_dir if settings.adapter == "full" else out_dir / "adapter"))  # gathers shards
    state.wait_for_everyone()
    for folder in (model_dir, out_dir / "adapter"):  # the Trainer's pickled arguments: not part of a model
        (folder / "training_args.bin").unlink(missing_ok=True)
    history = trainer.state.log_history
    table = forgetting.forgetting_table(history)
    warnings = forgetting.warnings_for(table, settings.general_ppl_warn_ratio)
    if state.is_main_process and settings.adapter != "full":
        _merge_adapter(settings, out_dir / "adapter", model_dir)
    summary = write_metrics(out_dir, history, _extras(settings, inputs, loaded, built, model_dir, wall=wall,
                                                      table=table, warnings=warnings),
                            write=state.is_main_process)
    if state.is_main_process:
        atomic_write_text(out_dir / "report.md", report_markdown(summary))
        plot_curves(out_dir / "loss.png", {
            "train loss": [(r["step"], r["loss"]) for r in history if "loss" in r],
            "held-out domain": [(r["step"], r["eval_domain_loss"]) for r in history if "eval_domain_loss" in r],
            "general text": [(r["step"], r["eval_general_loss"]) for r in history if "eval_general_loss" in r]},
            "loss (nats/token)", "continued pretraining")
        for line in warnings:
            print(f"WARNING: {line}", file=sys.stderr, flush=True)
    atomic_write_json(out_dir / "ranks" / f"rank{state.process_index}.json",
                      {"rank": state.process_index, "global_step": trainer.state.global_step,
                       "blocks_collated": len(built.collator.seen)})
    summary["blocks_seen"] = list(built.collator.seen)
    state.wait_for_everyone()
    return summary


def _extras(settings: CPTSettings, inputs: _Inputs, loaded: _Loaded, built: _Built, model_dir: Path, *,
            wall: float, table: list[dict[str, Any]], warnings: list[str]) -> dict[str, Any]:
    """The summary's keys beside those write_metrics takes from the log history (first/final loss)."""
    trainer, plan, checkpoint = built.trainer, loaded.plan, inputs.checkpoint
    start_step = int(checkpoint.name.split("-")[1]) if checkpoint else 0
    tokens_per_step = built.global_batch * plan["block_size"]
    domain = [r["eval_domain_loss"] for r in trainer.state.log_history if "eval_domain_loss" in r]
    rate = built.meter.summary()
    return {
        "pipeline": "cpt", "adapter": settings.adapter, "base_model": settings.model_name_or_path,
        "model_dir": str(model_dir),
        "global_step": trainer.state.global_step, "wall_s": round(wall, 2),
        "tokens_per_s": rate.get("tokens_per_second"),
        "final_eval_loss": domain[-1] if domain else None,  # the held-out domain blocks' loss
        "processes": inputs.state.num_processes,
        "resumed_from_step": start_step, "steps_this_run": trainer.state.global_step - start_step,
        "resumed_from": checkpoint.name if checkpoint else None,
        "max_steps": built.max_steps, "global_batch_blocks": built.global_batch, "block_size": plan["block_size"],
        "train_tokens_in_corpus": plan["train_tokens"],
        "tokens_trained": (trainer.state.global_step - start_step) * tokens_per_step,
        "throughput": rate, "forgetting": table, "warnings": warnings,
        "data": {"first_block_read": built.stream.first_block, "blocks_read": built.stream.blocks_read,
                 "start_cursor": built.cursor, "blocks_collated": len(built.collator.seen)},
        "memory": loaded.memory,
    }


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
        f"- train loss {result['first_loss']:.3f} → {result['final_loss']:.3f}" if result["first_loss"] else "",
        f"- throughput {tp.get('tokens_per_second', 0):,.0f} tokens/s; MFU "
        + (f"{tp['mfu']:.1%}" if tp.get("mfu") is not None else f"n/a ({tp.get('mfu_note', 'CPU')})"),
        "",
        "### Forgetting monitor (perplexity; lower is better)",
        "",
        table_markdown(result["forgetting"]),
    ]
    lines += [""] + [f"> **Warning:** {w}" for w in result["warnings"]]
    return "\n".join(line for line in lines if line is not None) + "\n"




# ─────────────────────────────────────────── launched ───────────────────────────────────────────


def cpt_job(settings: CPTSettings, corpus: Sequence[str | os.PathLike],
            general_text: str | os.PathLike | None = None) -> dict[str, Any]:
    """The job's CPT fields (trainers/jobs.py writes them beside the settings), after every corpus problem has
    been reported here, once, before any process starts."""
    corpus_files(corpus)
    return {"corpus": [str(Path(c).resolve()) for c in corpus],
            "general_text": str(general_text) if general_text else None}


def run_job(job: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """One process of a launched CPT run: `python -m rung.trainers.worker --job cpt_job.json`."""
    from rung.trainers.jobs import job_settings

    return train_cpt(job_settings(CPTSettings, job), job["corpus"], job["out_dir"],
                     resume=bool(job.get("resume")) or resume, general_text=job.get("general_text"))
