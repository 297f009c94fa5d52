"""Supervised fine-tuning (SFT) with TRL's SFTTrainer: LoRA (default), QLoRA or full weights. Read top to bottom.

    train_sft(settings, data, out)         the pipeline; `rung train sft` and the `sft` engine both call it
    build_sft_config(settings, ...)        SFTSettings -> (SFTConfig, LoraConfig | None), the only translation
    run_step(step, ctx)                    the `sft` engine for `rung run` (core/protocol.py)
    run_job(job)                           one process of `rung train sft --gpus N` (trainers/worker.py)

On several GPUs or nodes (`--gpus N`, `rung run --gpus N`) the shared launcher (trainers/launch.py) starts
train_sft once per GPU through `accelerate launch`: every process reads the same rows, the Trainer gives each
a slice of every global batch (per_device_train_batch_size x processes x accumulation), only the main process
prints and writes the run folder's files, and with sharded weights (FSDP, ZeRO-3) no samples are generated.

What ends up in OUT:
    adapter_model.safetensors + adapter_config.json (LoRA/QLoRA, PEFT format) or model.safetensors (full)
    tokenizer files, resolved_config.yaml, metrics.json, loss.png, samples.md, checkpoints/checkpoint-<step>/

Behaviour the anchors' users asked for:
- every data problem is reported with its line before any model loads (trainers/data.py);
- EOS ends every assistant turn: the chat template (ChatML when the model has none) ends each turn with the
  EOS token; if a hub template ends turns with another token, that token becomes EOS (common.end_of_turn_token);
- loss on the assistant's tokens only when the template has {% generation %} markers (assistant_only_loss
  left unset = on where possible), on the completion only for prompt/completion rows (TRL's default); chat rows
  whose template has no markers go to TRL as prompt/completion rows (data.completion_rows), so the loss is on
  the answers, not on a system message repeated in every row;
- examples longer than max_length are counted and what happens to them is printed (they are cut);
- the memory estimate and the device's free memory are printed before training; a run that will not fit stops;
- `--resume` continues from the last checkpoint at its step; without it, existing checkpoints stop the run;
- `--replay FILE|builtin --replay-ratio R` mixes general rows into the training rows against forgetting
  (trainers/replay.py: the arithmetic and the sources).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import click

from rung.core.errors import RungError
from rung.core.fileio import make_dir
from rung.core.resolve import step_settings
from rung.trainers import common, data, replay
from rung.trainers import device as device_mod
from rung.core.settings import SFTSettings, to_dict

SAMPLE_PROMPTS = 3          # held-out prompts answered before and after training (samples.md)
SAMPLE_NEW_TOKENS = 64


# ---------------------------------------------------------------------------------------------- builder


def build_sft_config(settings: SFTSettings, output_dir: Path, device: device_mod.Device, *, has_eval: bool,
                     assistant_only_loss: bool, eos_token: str | None):
    """SFTSettings -> (SFTConfig, LoraConfig or None). Field names are TRL's, so this is mostly a copy."""
    from peft import LoraConfig
    from trl import SFTConfig

    values = common.trl_fields(settings, SFTConfig)
    values.update(
        output_dir=str(output_dir),
        assistant_only_loss=assistant_only_loss,
        eos_token=eos_token,
        report_to="none",
        disable_tqdm=True,
        save_only_model=False,            # optimizer + scheduler + RNG state: --resume continues exactly
        logging_first_step=True,
        ddp_find_unused_parameters=False,  # launched: every trainable weight is used in each forward pass
        dataset_num_proc=None,
        **device_mod.device_args(settings, device),
    )
    if not has_eval:
        values["eval_strategy"] = "no"
    if settings.adapter == "full":
        return SFTConfig(**values), None
    lora = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,          # scale = alpha / r = 2 with the defaults (16, 32)
        lora_dropout=settings.lora_dropout,
        target_modules=settings.lora_target_modules,   # "all-linear": q,k,v,o,gate,up,down (not lm_head)
        modules_to_save=settings.lora_modules_to_save,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return SFTConfig(**values), lora


# ---------------------------------------------------------------------------------------------- pipeline


def train_sft(settings: SFTSettings, data_path: str | Path, out_dir: str | Path, *,
              eval_path: str | Path | None = None, resume: bool = False,
              echo: Callable[[str], None] = click.echo, show_config: bool = True) -> dict[str, Any]:
    """Fine-tune settings.model_name_or_path on data_path into out_dir. Returns the metrics summary."""
    out_dir = Path(out_dir)
    data_path = Path(data_path)
    rank, world = common.process_place()      # (0, 1) unless `accelerate launch` started this process
    main = rank == 0
    echo = echo if main else common.silent
    clock = time.perf_counter()
    timings: dict[str, float] = {}  # seconds per phase, in metrics.json: what rung adds around trainer.train()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    # 1. Checks that write nothing: existing checkpoints, QLoRA on CPU, every data problem with its line.
    checkpoint, start_step = common.resume_point(out_dir, resume, echo)
    device_mod.check_qlora(settings)                                   # CPU + qlora: one clear line, nothing loaded
    problems = replay.replay_problems(settings.replay, settings.replay_ratio)
    if problems:
        raise RungError(problems)
    train_rows, eval_rows, split = data.load_train_eval(data_path, eval_path, "sft", settings.eval_fraction,
                                                        settings.seed)
    n_task = len(train_rows)  # replay rows join the training rows only (never the held-out ones the gate scores)
    train_rows, replayed = replay.mix_rows(train_rows, settings.replay, settings.replay_ratio, settings.seed)

    # 2. Settings printed and saved before any model loads, so a failed run still says what it tried.
    config = common.resolved_config(settings, pipeline="sft", data=str(data_path),
                                    eval_data=str(eval_path) if eval_path else None,
                                    adapter_base_model=None if settings.adapter == "full"
                                    else settings.model_name_or_path)
    make_dir(out_dir, what="output folder")
    if main:
        common.announce_config(config, out_dir, echo, show=show_config)
        common.write_heldout(out_dir, eval_rows)
    echo(f"Data: {n_task} train / {len(eval_rows)} eval rows from {data_path} ({split})")
    if replayed:
        echo(replay.replay_note(settings.replay, replayed, n_task))

    # 3. Model and tokenizer; the chat template decides where EOS goes.
    common.quiet_libraries()
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    from rung.trainers.generate import answers
    from rung.trainers.jobs import quant_storage_dtype, weights_sharded
    from rung.core.models import load_model_and_tokenizer, resolve_model

    device = device_mod.detect_device()
    common.join_processes(device.kind)       # a launched run: this rank's GPU is torch's current device
    sharded = weights_sharded()              # FSDP / ZeRO-3: each process will hold a shard of the weights
    model_path = resolve_model(settings.model_name_or_path)
    model, tokenizer = load_model_and_tokenizer(
        settings.model_name_or_path, trust_remote_code=settings.trust_remote_code,
        quantization="4bit" if settings.adapter == "qlora" else None,
        dtype=(torch.bfloat16 if device.kind == "cuda" and device.bf16 and settings.bf16 is not False else None),
        quant_storage=quant_storage_dtype() if settings.adapter == "qlora" else None,
    )
    if not sharded:                          # FSDP / ZeRO-3 place the shards themselves
        device_mod.place_on_device(model, device)
    device_mod.warn_learning_rate(settings, echo)
    # what the base really is, measured on the loaded model (bitsandbytes swaps Linear for Linear4bit)
    base_4bit_linears = sum(1 for module in model.modules() if type(module).__name__ == "Linear4bit")
    conversational = "messages" in train_rows[0] or isinstance(train_rows[0].get("prompt"), list)
    eos_token = settings.eos_token
    if conversational and eos_token is None:
        eos_token, note = common.end_of_turn_token(tokenizer)
        echo(f"Template: {note}")
        if eos_token == tokenizer.eos_token:
            eos_token = None  # already the EOS: nothing to change
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    markers = bool(tokenizer.chat_template) and has_generation_markers(tokenizer.chat_template)
    if not markers and tokenizer.chat_template:
        try:  # TRL ships marked-up training templates for known families (Qwen, Llama 3, Gemma, ...)
            markers = get_training_chat_template(tokenizer) is not None
        except Exception:
            markers = False
    assistant_only = settings.assistant_only_loss
    if assistant_only is None:  # unset: on where the template allows it (messages rows + generation markers)
        assistant_only = "messages" in train_rows[0] and markers
    as_completions = ("messages" in train_rows[0] and not assistant_only and settings.assistant_only_loss is None
                      and settings.completion_only_loss is not False)
    if as_completions:  # no markers: chat rows go to TRL as prompt/completion, loss on the answers only
        train_rows, eval_rows = data.completion_rows(train_rows), data.completion_rows(eval_rows)
    echo("Loss: " + ("assistant tokens only ({% generation %} markers in the template)" if assistant_only
                     else "answer tokens only (chat rows as prompt/completion: the template has no generation "
                     "markers)" if as_completions
                     else "completion tokens only (prompt/completion rows)" if "prompt" in train_rows[0]
                     and settings.completion_only_loss is not False
                     else "every token (assistant_only_loss off)" if settings.assistant_only_loss is False
                     else "every token (the template has no generation markers)" if "messages" in train_rows[0]
                     else "every token"))

    # 4. Token statistics and what happens to long examples (no silent truncation).
    stats = data.token_stats(train_rows, tokenizer, settings.max_length)
    echo(f"Tokens per example: min {stats['min']}, mean {stats['mean']}, p95 {stats['p95']}, max {stats['max']}")
    note = data.truncation_note("sft", len(stats["over_max_length"]), len(stats["prompt_fills_max_length"]),
                                settings.max_length or 0, settings.packing)
    if note:
        echo("Warning: " + note)

    # 5. Memory: the estimator's figure for this run against the device's free memory.
    seq_len = min(settings.max_length or stats["max"], stats["max"]) if not settings.packing else (settings.max_length or stats["max"])
    memory = None
    if world == 1:  # launched: the launcher sized the run per GPU for its strategy (trainers/launch.py)
        memory = device_mod.memory_check(model_path, settings, method="sft", tokens=stats["total_tokens"],
                                         seq_len=seq_len, device=device, echo=echo)

    # 6. Held-out prompts answered before training (samples.md).
    sample_rows = (eval_rows or train_rows)[:SAMPLE_PROMPTS]
    prompts, references = zip(*[common.prompt_of(r) for r in sample_rows]) if sample_rows else ((), ())
    lap("prepare")            # config, data checks, imports, model load, token stats, memory check
    samples = main and not sharded  # generation needs the whole model: the main process's copy
    before = answers(model, tokenizer, list(prompts), SAMPLE_NEW_TOKENS) if samples else []
    lap("samples_before")

    # 7. The trainer. Steps: ceil(rows / (batch x accumulation)) x epochs, unless max_steps is set.
    sft_config, lora = build_sft_config(settings, common.checkpoint_dir(out_dir), device, has_eval=bool(eval_rows),
                                        assistant_only_loss=assistant_only, eos_token=eos_token)
    trainer = SFTTrainer(
        model=model, args=sft_config, train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer, peft_config=lora,
    )
    common.use_rung_progress(trainer, echo)
    counter = common.step_counter()
    trainer.add_callback(counter)
    trained = trainer.model
    n_trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in trained.parameters())
    tokens_per_epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    # per device x accumulation x processes: 4 x 1 x 2 GPUs = 8 examples per optimizer step
    batch = settings.per_device_train_batch_size * settings.gradient_accumulation_steps * \
        (world if world > 1 else max(1, device.count))
    echo(f"Training: {settings.adapter}, {n_trainable:,} of {n_total:,} parameters trainable "
         f"({n_trainable / max(n_total, 1):.2%}); {len(trainer.train_dataset)} sequences"
         f"{' (packed)' if settings.packing else ''}, {tokens_per_epoch:,} tokens per epoch, effective batch {batch}"
         + (f" over {world} processes" if world > 1 else ""))
    lap("trainer_init")       # TRL's dataset preparation (template, tokenize, labels) and model wrapping
    started = time.perf_counter()
    common.run_trainer(trainer, checkpoint)
    wall = time.perf_counter() - started
    clock = time.perf_counter()
    timings["train"] = round(wall, 3)

    # 8. Outputs: adapter or weights, tokenizer, metrics, loss curve, samples. Every process takes part in the
    #    save (FSDP gathers the shards) and the evaluation; the main process writes the rest.
    common.save_full_state(trainer)
    trainer.save_model(str(out_dir))
    eval_metrics = common.final_eval(trainer, bool(eval_rows))
    if main:
        (out_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; resolved_config.yaml holds the settings
        tokenizer.save_pretrained(str(out_dir))
    lap("save_and_eval")
    after = answers(trainer.model, tokenizer, list(prompts), SAMPLE_NEW_TOKENS) if samples else []
    lap("samples_after")
    if samples:
        common.write_samples(out_dir, list(prompts), list(references), before, after, "SFT")
    elif main:
        common.skipped_samples_note(out_dir, "SFT", world)
    # tokens this process trained on: a resumed run covers only the epochs after its checkpoint
    epochs_run = (trainer.state.epoch or 0) * counter.steps / max(trainer.state.global_step, 1)
    if main:
        common.plot_loss(out_dir, trainer.state.log_history, f"SFT ({settings.adapter}) on {data_path.name}")
    lap("plot")
    summary = common.write_metrics(out_dir, trainer.state.log_history, {
        "pipeline": "sft", "adapter": settings.adapter, "base_model": settings.model_name_or_path,
        "global_step": trainer.state.global_step, "resumed_from_step": start_step,
        "steps_this_run": counter.steps, "wall_s": round(wall, 2),
        "train_tokens_per_epoch": tokens_per_epoch,
        "tokens_per_s": round(tokens_per_epoch * epochs_run / wall, 1) if wall else None,
        "eval_loss": eval_metrics.get("eval_loss"), "replay_rows": replayed, "task_rows": n_task,
        "trainable_params": n_trainable, "total_params": n_total,
        "assistant_only_loss": assistant_only, "answers_only_as_completions": as_completions,
        "eos_token": eos_token or tokenizer.eos_token,
        "token_stats": {k: v for k, v in stats.items() if k not in ("over_max_length", "prompt_fills_max_length")}
        | {"over_max_length": len(stats["over_max_length"])},
        "memory": memory, "base_4bit_linears": base_4bit_linears, "processes": world,
        "timings_s": timings,
    }, write=main)
    common.wait_for_everyone()  # the launcher returns once every file is written
    last = summary.get("final_loss")
    echo(f"Done in {wall:.1f} s: step {trainer.state.global_step}, final train loss "
         f"{last if last is None else round(last, 4)}"
         + (f", eval loss {eval_metrics['eval_loss']:.4f}" if eval_rows else ""))
    echo(f"Outputs in {out_dir}: {'adapter (PEFT)' if lora else 'model weights'}, tokenizer, resolved_config.yaml, "
         "metrics.json, loss.png, samples.md")
    return summary


# ---------------------------------------------------------------------------------------------- engine


def run_step(step: dict, ctx) -> Any:
    """The `sft` engine: base model from the plan (or an earlier step's model_dir), data.train / data.eval.
    With `rung run --gpus N` (N > 1) or --nodes, the step runs through `accelerate launch` (trainers/launch.py)."""
    from rung.core.protocol import StepResult
    from rung.trainers import launch

    settings = step_settings(SFTSettings, step, ctx)
    train_path = ctx.data_path("train")
    if train_path is None:
        raise RungError(f"step {step['id']}: the plan has no data.train (SFT examples)")
    eval_path = ctx.data_path("eval")
    if launch.step_launches(ctx):
        summary = launch.launch_step("sft", settings, ctx, job=sft_job(settings, train_path, eval_path),
                                     echo=click.echo)
    else:
        summary = train_sft(settings, train_path, ctx.run_dir, eval_path=eval_path, resume=ctx.resume,
                            show_config=False)  # `rung run` printed the resolved settings
    keys = ("final_loss", "final_eval_loss", "global_step", "wall_s", "tokens_per_s")
    return StepResult(
        outputs={"model_dir": str(ctx.run_dir), "adapter": settings.adapter != "full",
                 "samples": str(Path(ctx.run_dir) / "samples.md"), "loss_plot": str(Path(ctx.run_dir) / "loss.png"),
                 **({"heldout": str(Path(ctx.run_dir) / common.HELDOUT)}
                    if (Path(ctx.run_dir) / common.HELDOUT).exists() else {})},
        metrics={k: summary.get(k) for k in keys},
        summary=(f"SFT ({settings.adapter}) of {settings.model_name_or_path}: "
                 f"loss {common.fmt(summary.get('first_loss'))} -> {common.fmt(summary.get('final_loss'))}, "
                 f"eval loss {common.fmt(summary.get('final_eval_loss'))}, "
                 f"{summary.get('global_step')} steps"
                 + (f" on {summary['processes']} processes" if (summary.get("processes") or 1) > 1 else "")
                 + ". Samples before/after: samples.md."),
    )


# ---------------------------------------------------------------------------------------------- launched


def sft_job(settings: SFTSettings, data_path: str | Path, eval_path: str | Path | None) -> dict[str, Any]:
    """The job's SFT fields (trainers/jobs.py writes them beside the settings), after every data problem has
    been reported here, once, before any process starts."""
    data.load_train_eval(Path(data_path), Path(eval_path) if eval_path else None, "sft", settings.eval_fraction,
                         settings.seed)
    return {"data": str(Path(data_path).resolve()), "eval_data": str(Path(eval_path).resolve()) if eval_path else None}


def run_job(job: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """One process of a launched SFT run: `python -m rung.trainers.worker --job sft_job.json`."""
    from rung.trainers.jobs import job_settings

    return train_sft(job_settings(SFTSettings, job), job["data"], job["out_dir"], eval_path=job.get("eval_data"),
                     resume=bool(job.get("resume")) or resume)


__all__ = ["build_sft_config", "train_sft", "run_job", "run_step", "sft_job", "to_dict"]
