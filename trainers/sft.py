"""Supervised fine-tuning (SFT) with TRL's SFTTrainer: LoRA (default), QLoRA or full weights. Read top to bottom.

    train_sft(settings, data, out)         the pipeline; `rung train sft` and the `sft` engine (engines/sft.py) call it
    build_sft_config(settings, ...)        SFTSettings -> (SFTConfig, LoraConfig | None), the only translation
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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from rung.core.errors import RungError
from rung.core.fileio import make_dir
from rung.trainers import common, data, jobs, replay
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
# check inputs -> load -> build the trainer -> train -> write outputs; each phase hands the next what it made.


@dataclass
class _Inputs:
    train_rows: list[dict]
    eval_rows: list[dict]
    checkpoint: str | None            # --resume: the checkpoint trainer.train continues from
    start_step: int
    n_task: int                       # training rows before replay rows joined them
    replayed: int


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    device: device_mod.Device
    sharded: bool                     # FSDP / ZeRO-3: this process holds a shard of the weights
    base_4bit_linears: int
    eos_token: str | None
    assistant_only: bool
    as_completions: bool              # chat rows handed to TRL as prompt/completion (loss on the answers)
    stats: dict[str, Any]             # token statistics (data.token_stats)
    memory: dict[str, Any] | None


@dataclass
class _Built:
    trainer: Any
    counter: Any                      # common.step_counter
    lora: Any
    n_trainable: int
    n_total: int
    tokens_per_epoch: int


def train_sft(settings: SFTSettings, data_path: str | Path, out_dir: str | Path, *,
              eval_path: str | Path | None = None, resume: bool = False,
              echo: Callable[[str], None] = click.echo, show_config: bool = True) -> common.Summary:
    """Fine-tune settings.model_name_or_path on data_path into out_dir. Returns the summary (common.Summary)."""
    out_dir, data_path = Path(out_dir), Path(data_path)
    process = common.this_process(echo)      # rank 0 of 1 unless `accelerate launch` started this process
    laps = common.Laps()
    inputs = _check_inputs(settings, data_path, eval_path, out_dir, resume, process, show_config)
    loaded = _load(settings, inputs, process)
    sample_rows = (inputs.eval_rows or inputs.train_rows)[:SAMPLE_PROMPTS]   # answered before and after: samples.md
    prompts, references = zip(*[common.prompt_of(r) for r in sample_rows]) if sample_rows else ((), ())
    laps("prepare")            # config, data checks, imports, model load, token stats, memory check
    samples = process.main and not loaded.sharded  # generation needs the whole model: the main process's copy
    before = _answers(loaded.model, loaded.tokenizer, prompts) if samples else []
    laps("samples_before")
    built = _build_trainer(settings, inputs, loaded, out_dir, process)
    laps("trainer_init")       # TRL's dataset preparation (template, tokenize, labels) and model wrapping
    wall = common.timed_train(built.trainer, inputs.checkpoint)
    laps("train", wall)
    return _write_outputs(settings, inputs, loaded, built, out_dir, data_path, process, laps, wall=wall,
                          samples=(list(prompts), list(references), before if samples else None))


def _answers(model, tokenizer, prompts) -> list[str]:
    from rung.trainers.generate import answers

    return answers(model, tokenizer, list(prompts), SAMPLE_NEW_TOKENS)


def _check_inputs(settings: SFTSettings, data_path: Path, eval_path: str | Path | None, out_dir: Path, resume: bool,
                  process: common.Process, show_config: bool) -> _Inputs:
    """Phase 1: checks that write nothing (existing checkpoints, QLoRA on CPU, every data problem with its line),
    then the settings printed and saved before any model loads, so a failed run still says what it tried."""
    echo = process.echo
    checkpoint, start_step = common.resume_point(out_dir, resume, echo)
    device_mod.check_qlora(settings)                                   # CPU + qlora: one clear line, nothing loaded
    problems = replay.replay_problems(settings.replay, settings.replay_ratio)
    if problems:
        raise RungError(problems)
    train_rows, eval_rows, split = data.load_train_eval(data_path, eval_path, "sft", settings.eval_fraction,
                                                        settings.seed)
    n_task = len(train_rows)  # replay rows join the training rows only (never the held-out ones the gate scores)
    train_rows, replayed = replay.mix_rows(train_rows, settings.replay, settings.replay_ratio, settings.seed)
    config = common.resolved_config(settings, pipeline="sft", data=str(data_path),
                                    eval_data=str(eval_path) if eval_path else None,
                                    adapter_base_model=None if settings.adapter == "full"
                                    else settings.model_name_or_path)
    make_dir(out_dir, what="output folder")
    if process.main:
        common.announce_config(config, out_dir, echo, show=show_config)
        common.write_heldout(out_dir, eval_rows)
    echo(f"Data: {n_task} train / {len(eval_rows)} eval rows from {data_path} ({split})")
    if replayed:
        echo(replay.replay_note(settings.replay, replayed, n_task))
    return _Inputs(train_rows=train_rows, eval_rows=eval_rows, checkpoint=checkpoint, start_step=start_step,
                   n_task=n_task, replayed=replayed)


def _load(settings: SFTSettings, inputs: _Inputs, process: common.Process) -> _Loaded:
    """Phase 2: model and tokenizer on the device, where EOS goes, which tokens carry the loss, token statistics
    (no silent truncation) and the memory check against the device's free memory."""
    common.quiet_libraries()
    import torch

    from rung.core.models import load_model_and_tokenizer, resolve_model
    from rung.trainers.jobs import quant_storage_dtype, weights_sharded

    echo = process.echo
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
    eos_token = _eos_token(settings, inputs.train_rows, tokenizer, echo)
    assistant_only, as_completions = _loss_tokens(settings, inputs, tokenizer, echo)
    stats = data.token_stats(inputs.train_rows, tokenizer, settings.max_length)
    echo(f"Tokens per example: min {stats['min']}, mean {stats['mean']}, p95 {stats['p95']}, max {stats['max']}")
    note = data.truncation_note("sft", len(stats["over_max_length"]), len(stats["prompt_fills_max_length"]),
                                settings.max_length or 0, settings.packing)
    if note:
        echo("Warning: " + note)
    seq_len = min(settings.max_length or stats["max"], stats["max"]) if not settings.packing else (settings.max_length or stats["max"])
    memory = None
    if process.world == 1:  # launched: the launcher sized the run per GPU for its strategy (trainers/launch.py)
        memory = device_mod.memory_check(model_path, settings, method="sft", tokens=stats["total_tokens"],
                                         seq_len=seq_len, device=device, echo=echo)
    return _Loaded(model=model, tokenizer=tokenizer, device=device, sharded=sharded,
                   base_4bit_linears=base_4bit_linears, eos_token=eos_token, assistant_only=assistant_only,
                   as_completions=as_completions, stats=stats, memory=memory)


def _eos_token(settings: SFTSettings, train_rows: list[dict], tokenizer, echo) -> str | None:
    """settings.eos_token, else for chat rows the token that ends an assistant turn in the template (None when
    that is already the EOS: nothing to change)."""
    conversational = "messages" in train_rows[0] or isinstance(train_rows[0].get("prompt"), list)
    eos_token = settings.eos_token
    if conversational and eos_token is None:
        eos_token, note = common.end_of_turn_token(tokenizer)
        echo(f"Template: {note}")
        if eos_token == tokenizer.eos_token:
            eos_token = None  # already the EOS: nothing to change
    return eos_token


def _loss_tokens(settings: SFTSettings, inputs: _Inputs, tokenizer, echo) -> tuple[bool, bool]:
    """(assistant_only_loss, chat rows as prompt/completion): where the loss goes, from the template's
    {% generation %} markers and the rows' shape. Chat rows without markers become prompt/completion rows here."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    markers = bool(tokenizer.chat_template) and has_generation_markers(tokenizer.chat_template)
    if not markers and tokenizer.chat_template:
        try:  # TRL ships marked-up training templates for known families (Qwen, Llama 3, Gemma, ...)
            markers = get_training_chat_template(tokenizer) is not None
        except Exception:
            markers = False
    chat = "messages" in inputs.train_rows[0]
    assistant_only = settings.assistant_only_loss
    if assistant_only is None:  # unset: on where the template allows it (messages rows + generation markers)
        assistant_only = chat and markers
    as_completions = (chat and not assistant_only and settings.assistant_only_loss is None
                      and settings.completion_only_loss is not False)
    if as_completions:  # no markers: chat rows go to TRL as prompt/completion, loss on the answers only
        inputs.train_rows, inputs.eval_rows = data.completion_rows(inputs.train_rows), data.completion_rows(inputs.eval_rows)
    echo("Loss: " + ("assistant tokens only ({% generation %} markers in the template)" if assistant_only
                     else "answer tokens only (chat rows as prompt/completion: the template has no generation "
                     "markers)" if as_completions
                     else "completion tokens only (prompt/completion rows)" if "prompt" in inputs.train_rows[0]
                     and settings.completion_only_loss is not False
                     else "every token (assistant_only_loss off)" if settings.assistant_only_loss is False
                     else "every token (the template has no generation markers)" if chat
                     else "every token"))
    return assistant_only, as_completions


def _build_trainer(settings: SFTSettings, inputs: _Inputs, loaded: _Loaded, out_dir: Path,
                   process: common.Process) -> _Built:
    """Phase 3: the SFTTrainer. Steps: ceil(rows / (batch x accumulation)) x epochs, unless max_steps is set."""
    from datasets import Dataset
    from trl import SFTTrainer

    world, device = process.world, loaded.device
    sft_config, lora = build_sft_config(settings, common.checkpoint_dir(out_dir), device,
                                        has_eval=bool(inputs.eval_rows), assistant_only_loss=loaded.assistant_only,
                                        eos_token=loaded.eos_token)
    trainer = SFTTrainer(
        model=loaded.model, args=sft_config, train_dataset=Dataset.from_list(inputs.train_rows),
        eval_dataset=Dataset.from_list(inputs.eval_rows) if inputs.eval_rows else None,
        processing_class=loaded.tokenizer, peft_config=lora,
    )
    counter = common.count_steps(trainer, process.echo)
    n_trainable, n_total = common.parameter_counts(trainer.model)
    tokens_per_epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    # per device x accumulation x processes: 4 x 1 x 2 GPUs = 8 examples per optimizer step
    batch = settings.per_device_train_batch_size * settings.gradient_accumulation_steps * \
        (world if world > 1 else max(1, device.count))
    process.echo(f"Training: {settings.adapter}, {n_trainable:,} of {n_total:,} parameters trainable "
                 f"({n_trainable / max(n_total, 1):.2%}); {len(trainer.train_dataset)} sequences"
                 f"{' (packed)' if settings.packing else ''}, {tokens_per_epoch:,} tokens per epoch, effective batch "
                 f"{batch}" + (f" over {world} processes" if world > 1 else ""))
    return _Built(trainer=trainer, counter=counter, lora=lora, n_trainable=n_trainable, n_total=n_total,
                  tokens_per_epoch=tokens_per_epoch)


def _write_outputs(settings: SFTSettings, inputs: _Inputs, loaded: _Loaded, built: _Built, out_dir: Path,
                   data_path: Path, process: common.Process, laps: common.Laps, *, wall: float,
                   samples: tuple[list, list, list[str] | None]) -> common.Summary:
    """Phase 5: adapter or weights, tokenizer, metrics, loss curve, samples. Every process takes part in the
    save (FSDP gathers the shards) and the evaluation; the main process writes the rest."""
    trainer, echo = built.trainer, process.echo
    common.save_trained(trainer, loaded.tokenizer, out_dir, process.main)
    eval_metrics = common.final_eval(trainer, bool(inputs.eval_rows))
    laps("save_and_eval")
    prompts, references, before = samples
    after = _answers(trainer.model, loaded.tokenizer, prompts) if before is not None else []
    laps("samples_after")
    common.samples_or_note(out_dir, process, prompts, references, before or [], after, "SFT",
                           samples=before is not None, note_title="SFT")
    if process.main:
        common.plot_loss(out_dir, trainer.state.log_history, f"SFT ({settings.adapter}) on {data_path.name}")
    laps("plot")
    summary = common.write_metrics(out_dir, trainer.state.log_history,
                                   _extras(settings, inputs, loaded, built, process, laps, wall),
                                   write=process.main)
    common.wait_for_everyone()  # the launcher returns once every file is written
    last = summary.get("final_loss")
    echo(f"Done in {wall:.1f} s: step {trainer.state.global_step}, final train loss "
         f"{last if last is None else round(last, 4)}"
         + (f", eval loss {eval_metrics['eval_loss']:.4f}" if inputs.eval_rows else ""))
    echo(f"Outputs in {out_dir}: {'adapter (PEFT)' if built.lora else 'model weights'}, tokenizer, "
         "resolved_config.yaml, metrics.json, loss.png, samples.md")
    return summary


def _extras(settings: SFTSettings, inputs: _Inputs, loaded: _Loaded, built: _Built, process: common.Process,
            laps: common.Laps, wall: float) -> dict[str, Any]:
    """The summary's keys beside those write_metrics takes from the log history (first/final/eval loss)."""
    trainer, stats = built.trainer, loaded.stats
    # tokens this process trained on: a resumed run covers only the epochs after its checkpoint
    epochs_run = (trainer.state.epoch or 0) * built.counter.steps / max(trainer.state.global_step, 1)
    return {
        "pipeline": "sft", "adapter": settings.adapter, "base_model": settings.model_name_or_path,
        "global_step": trainer.state.global_step, "resumed_from_step": inputs.start_step,
        "steps_this_run": built.counter.steps, "wall_s": round(wall, 2),
        "train_tokens_per_epoch": built.tokens_per_epoch,
        "tokens_per_s": round(built.tokens_per_epoch * epochs_run / wall, 1) if wall else None,
        "replay_rows": inputs.replayed, "task_rows": inputs.n_task,
        "trainable_params": built.n_trainable, "total_params": built.n_total,
        "assistant_only_loss": loaded.assistant_only, "answers_only_as_completions": loaded.as_completions,
        "eos_token": loaded.eos_token or loaded.tokenizer.eos_token,
        "token_stats": {k: v for k, v in stats.items() if k not in ("over_max_length", "prompt_fills_max_length")}
        | {"over_max_length": len(stats["over_max_length"])},
        "memory": loaded.memory, "base_4bit_linears": loaded.base_4bit_linears, "processes": process.world,
        "timings_s": laps.timings,
    }


# ---------------------------------------------------------------------------------------------- launched


def sft_job(settings: SFTSettings, data_path: str | Path, eval_path: str | Path | None) -> dict[str, Any]:
    """The launched job's fields, every data problem reported before any process starts (trainers/jobs.py)."""
    return jobs.data_job("sft", settings, data_path, eval_path)


def run_job(job: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """One process of a launched SFT run: `python -m rung.trainers.worker --job sft_job.json`."""
    return jobs.run_data_job(train_sft, SFTSettings, job, resume)


__all__ = ["build_sft_config", "train_sft", "run_job", "sft_job", "to_dict"]
