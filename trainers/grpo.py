"""Reinforcement with the task's own checker (GRPO) on TRL's GRPOTrainer: LoRA (default), QLoRA or full weights.
Read top to bottom, like trainers/sft.py.

    train_grpo(settings, data, out, score=...)  the pipeline; `rung train grpo` and the `grpo` engine both call it
    build_grpo_config(settings, ...)            GRPOSettings -> (GRPOConfig, LoraConfig | None), the only translation
    trl_reward(score, name)                     a rung metric as TRL's reward_funcs signature
    run_job(job, score)                         one process of `rung train grpo --gpus N` (engines/grpo.py)

GRPO samples num_generations completions per prompt, scores each with the reward (the metric the probe and the gate
use: engines/metrics.py resolves its name, this file never imports it), and moves the policy toward the completions
that beat their group's mean. It needs no demonstrations, only prompts, plus a reference where the metric compares
with one. It improves what the model can already sometimes do: a prompt whose group all scores 0 teaches nothing
(TRL logs that share as frac_reward_zero_std).

What ends up in OUT (as for SFT): adapter or weights, tokenizer, resolved_config.yaml, metrics.json, loss.png,
reward.png (mean reward against step), samples.md (held-out prompts before/after, with their reward),
heldout.jsonl (the gate's rows), checkpoints/checkpoint-<step>/ for --resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from rung.core.errors import RungError
from rung.core.fileio import make_dir
from rung.core.settings import GRPOSettings
from rung.trainers import common, data, replay
from rung.trainers import device as device_mod

Score = Callable[[list[str], list[str]], list[float]]   # (outputs, references) -> one reward per output, in [0, 1]
SAMPLE_PROMPTS = 3


# ---------------------------------------------------------------------------------------------- builder


def build_grpo_config(settings: GRPOSettings, output_dir: Path, device: device_mod.Device, *, has_eval: bool):
    """GRPOSettings -> (GRPOConfig, LoraConfig or None). Field names are TRL's, so this is mostly a copy."""
    from peft import LoraConfig
    from trl import GRPOConfig

    values = common.trl_fields(settings, GRPOConfig)
    values.update(
        output_dir=str(output_dir),
        report_to="none",
        disable_tqdm=True,
        save_only_model=False,            # optimizer + scheduler + RNG state: --resume continues exactly
        logging_first_step=True,
        ddp_find_unused_parameters=False,
        **device_mod.device_args(settings, device),
    )
    if not has_eval:
        values["eval_strategy"] = "no"
    if settings.adapter == "full":
        return GRPOConfig(**values), None
    lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                      target_modules=settings.lora_target_modules, modules_to_save=settings.lora_modules_to_save,
                      bias="none", task_type="CAUSAL_LM")
    return GRPOConfig(**values), lora


def completion_text(completion: Any) -> str:
    """A completion as text: conversational completions are lists of messages (the assistant's content)."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def trl_reward(score: Score, name: str, replay_score: Score | None = None):
    """reward_funcs for GRPOTrainer: (prompts, completions, **columns) -> rewards. Dataset columns arrive as
    keyword lists (TRL repeats them per generation): `reference` is the metric's reference, `rung_source` marks
    replay rows, which replay_score rewards instead of the task metric."""
    def reward(prompts, completions, reference=None, rung_source=None, **_columns) -> list[float]:
        texts = [completion_text(c) for c in completions]
        refs = [r or "" for r in (reference or [""] * len(texts))]
        sources = rung_source or ["task"] * len(texts)
        rewards = [0.0] * len(texts)
        for kind, scorer in (("task", score), ("replay", replay_score or score)):
            index = [i for i, s in enumerate(sources) if s == kind]
            if index:
                for i, value in zip(index, scorer([texts[i] for i in index], [refs[i] for i in index])):
                    rewards[i] = float(value)
        return rewards

    reward.__name__ = name  # TRL logs rewards/<name>/mean
    return reward


def replay_row(pair: tuple[list[dict], str], like: dict) -> dict:
    """A replay (prompt messages, answer) as a GRPO row shaped like the task's: prompt + reference."""
    shaped = replay.shaped_like(pair, {"prompt": like["prompt"]})
    return {"prompt": shaped["prompt"], "reference": pair[1], replay.REPLAY_SOURCE: "replay"}


# ---------------------------------------------------------------------------------------------- pipeline
# check inputs -> load -> build the trainer -> train -> write outputs, as in trainers/sft.py.


@dataclass
class _Inputs:
    train_rows: list[dict]
    eval_rows: list[dict]
    checkpoint: str | None
    start_step: int
    n_task: int                       # training prompts before replay rows joined them
    replayed: int
    generation_batch: int             # completions per optimizer step (batch x accumulation x processes)


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    device: device_mod.Device
    sharded: bool
    memory: dict[str, Any] | None


@dataclass
class _Built:
    trainer: Any
    counter: Any                      # common.step_counter
    n_trainable: int
    n_total: int


def train_grpo(settings: GRPOSettings, data_path: str | Path, out_dir: str | Path, *, score: Score,
               metric: str, eval_path: str | Path | None = None, resume: bool = False,
               replay_score: Score | None = None, echo: Callable[[str], None] = click.echo) -> common.Summary:
    """GRPO of settings.model_name_or_path on the prompts in data_path into out_dir, rewarded by `score` (the metric
    named `metric`). Returns the summary (common.Summary: the shared keys, plus first_reward/final_reward)."""
    out_dir, data_path = Path(out_dir), Path(data_path)
    process = common.this_process(echo)
    laps = common.Laps()
    inputs = _check_inputs(settings, data_path, eval_path, out_dir, resume, process, metric)
    loaded = _load(settings, inputs, process)
    # held-out prompts answered (greedy) and scored before training (samples.md)
    sample_rows = (inputs.eval_rows or [r for r in inputs.train_rows
                                        if r[replay.REPLAY_SOURCE] == "task"])[:SAMPLE_PROMPTS]
    prompts, references = [r["prompt"] for r in sample_rows], [r["reference"] for r in sample_rows]
    samples = process.main and not loaded.sharded
    before = answers_of(loaded.model, loaded.tokenizer, prompts, settings) if samples else None
    laps("prepare")
    built = _build_trainer(settings, inputs, loaded, out_dir, process, reward=trl_reward(score, metric, replay_score))
    wall = common.timed_train(built.trainer, inputs.checkpoint)
    laps("train", wall)
    return _write_outputs(settings, inputs, loaded, built, out_dir, data_path, process, laps, wall=wall,
                          metric=metric, score=score, samples=(prompts, references, before))


def answers_of(model, tokenizer, prompts: list, settings: GRPOSettings) -> list[str]:
    from rung.trainers.generate import answers

    return answers(model, tokenizer, prompts, settings.max_completion_length)


def _check_inputs(settings: GRPOSettings, data_path: Path, eval_path: str | Path | None, out_dir: Path, resume: bool,
                  process: common.Process, metric: str) -> _Inputs:
    """Phase 1: checks that write nothing (checkpoints, QLoRA on CPU, the group arithmetic, every data problem
    with its line), then the settings printed and saved before any model loads."""
    echo = process.echo
    checkpoint, start_step = common.resume_point(out_dir, resume, echo)
    device_mod.check_qlora(settings)
    problems = replay.replay_problems(settings.replay, settings.replay_ratio)
    generation_batch = settings.per_device_train_batch_size * settings.gradient_accumulation_steps * process.world
    if generation_batch % settings.num_generations:
        problems.append(f"--batch-size {settings.per_device_train_batch_size} x --gradient-accumulation-steps "
                        f"{settings.gradient_accumulation_steps} x {process.world} processes = {generation_batch} "
                        f"completions per step does not divide into groups of --num-generations "
                        f"{settings.num_generations}")
    if settings.use_vllm:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            problems.append("--use-vllm needs vLLM: pip install vllm (a version TRL supports), or drop --use-vllm")
    if problems:
        raise RungError(problems)
    train_rows, eval_rows, split = data.load_train_eval(data_path, eval_path, "grpo", settings.eval_fraction,
                                                        settings.seed)
    n_task = len(train_rows)
    train_rows, replayed = replay.mix_rows(train_rows, settings.replay, settings.replay_ratio, settings.seed,
                                           shape=replay_row)
    train_rows = [{**row, replay.REPLAY_SOURCE: row.get(replay.REPLAY_SOURCE, "task")} for row in train_rows]
    _announce(settings, data_path, eval_path, out_dir, process, metric, eval_rows)
    echo(f"Data: {n_task} train prompts / {len(eval_rows)} held out from {data_path} ({split}); reward: {metric}")
    if replayed:
        echo(replay.replay_note(settings.replay, replayed, n_task) + " (rewarded by token F1 against their answer)")
    return _Inputs(train_rows=train_rows, eval_rows=eval_rows, checkpoint=checkpoint, start_step=start_step,
                   n_task=n_task, replayed=replayed, generation_batch=generation_batch)


def _announce(settings: GRPOSettings, data_path: Path, eval_path: str | Path | None, out_dir: Path,
              process: common.Process, metric: str, eval_rows: list[dict]) -> None:
    """resolved_config.yaml (printed) and heldout.jsonl, the gate's rows, from the main process."""
    from rung.core.models import adapter_base, is_adapter_dir

    spec = settings.model_name_or_path
    config = common.resolved_config(settings, pipeline="grpo", data=str(data_path), metric=metric,
                                    eval_data=str(eval_path) if eval_path else None,
                                    adapter_base_model=None if settings.adapter == "full" else
                                    adapter_base(Path(spec)) if is_adapter_dir(spec) else spec)
    make_dir(out_dir, what="output folder")
    if process.main:
        common.announce_config(config, out_dir, process.echo)
        common.write_heldout(out_dir, [{"prompt": r["prompt"], "completion": r["reference"]} for r in eval_rows])


def _load(settings: GRPOSettings, inputs: _Inputs, process: common.Process) -> _Loaded:
    """Phase 2: model and tokenizer (generation pads on the left: the prompt's end must touch the completion),
    prompt lengths and the memory check: a step holds per_device_train_batch_size sequences of prompt + completion."""
    common.quiet_libraries()
    from rung.core.models import resolve_model
    from rung.trainers.jobs import weights_sharded

    echo = process.echo
    device = device_mod.detect_device()
    common.join_processes(device.kind)
    sharded = weights_sharded()
    model, tokenizer, base = load_policy(settings, device, echo)
    model_path = resolve_model(base)
    tokenizer.padding_side = "left"
    if not sharded:
        device_mod.place_on_device(model, device)
    device_mod.warn_learning_rate(settings, echo, lora_floor=1e-5, suggested="1e-6")
    if settings.use_vllm and device.kind != "cuda":
        raise RungError("--use-vllm needs a CUDA GPU (vLLM does not generate on this CPU); drop --use-vllm")
    prompt_tokens = [data.render_lengths({"prompt": r["prompt"]}, tokenizer)["prompt"] for r in inputs.train_rows]
    seq_len = max(prompt_tokens) + settings.max_completion_length
    echo(f"Prompt tokens: min {min(prompt_tokens)}, max {max(prompt_tokens)}; up to {settings.max_completion_length} "
         f"generated per completion, {settings.num_generations} completions per prompt")
    memory = None
    if process.world == 1:
        memory = device_mod.memory_check(model_path, settings, method="grpo",
                                         tokens=seq_len * len(inputs.train_rows) * settings.num_generations,
                                         seq_len=seq_len, device=device, echo=echo)
    return _Loaded(model=model, tokenizer=tokenizer, device=device, sharded=sharded, memory=memory)


def _build_trainer(settings: GRPOSettings, inputs: _Inputs, loaded: _Loaded, out_dir: Path, process: common.Process,
                   *, reward) -> _Built:
    """Phase 3: the GRPOTrainer. Per optimizer step: batch x accumulation x processes completions = that /
    num_generations prompts (8 x 1 x 1 = 8 completions = 2 prompts of 4), each completion one generation of up to
    max_completion_length tokens plus a forward and backward pass over prompt + completion."""
    from datasets import Dataset
    from trl import GRPOTrainer

    grpo_config, lora = build_grpo_config(settings, common.checkpoint_dir(out_dir), loaded.device,
                                          has_eval=bool(inputs.eval_rows) and settings.eval_strategy != "no")
    if not new_adapter(settings):
        lora = None  # an SFT adapter keeps training (sft_then_grpo); full weights have none
    trainer = GRPOTrainer(model=loaded.model, reward_funcs=reward, args=grpo_config,
                          train_dataset=Dataset.from_list(inputs.train_rows),
                          eval_dataset=Dataset.from_list(inputs.eval_rows)
                          if inputs.eval_rows and grpo_config.eval_strategy != "no" else None,
                          processing_class=loaded.tokenizer, peft_config=lora)
    counter = common.count_steps(trainer, process.echo)
    n_trainable, n_total = common.parameter_counts(trainer.model)
    process.echo(f"Training: GRPO ({settings.adapter}), {n_trainable:,} of {n_total:,} parameters trainable; "
                 f"{inputs.generation_batch // settings.num_generations} prompts x {settings.num_generations} "
                 "completions per step" + (f" over {process.world} processes" if process.world > 1 else ""))
    return _Built(trainer=trainer, counter=counter, n_trainable=n_trainable, n_total=n_total)


def _write_outputs(settings: GRPOSettings, inputs: _Inputs, loaded: _Loaded, built: _Built, out_dir: Path,
                   data_path: Path, process: common.Process, laps: common.Laps, *, wall: float, metric: str,
                   score: Score, samples: tuple[list, list, list[str] | None]) -> common.Summary:
    """Phase 5: adapter or weights, tokenizer, metrics, loss and reward curves, samples."""
    trainer, echo = built.trainer, process.echo
    common.save_trained(trainer, loaded.tokenizer, out_dir, process.main)
    prompts, references, before = samples
    sample_rewards = {}
    if before is not None:
        after = answers_of(trainer.model, loaded.tokenizer, prompts, settings)
        sample_rewards = {"before": _mean(score(before, references)), "after": _mean(score(after, references))}
        common.write_samples(out_dir, prompts, references, before, after,
                             f"GRPO (reward {metric}: {sample_rewards['before']:.2f} before, "
                             f"{sample_rewards['after']:.2f} after)")
    elif process.main:
        common.skipped_samples_note(out_dir, "GRPO", process.world)
    history = trainer.state.log_history
    if process.main:
        common.plot_loss(out_dir, history, f"GRPO ({settings.adapter}) on {data_path.name}")
        plot_reward(out_dir, history, f"GRPO reward ({metric}) on {data_path.name}")
    rewards = [h["reward"] for h in history if "reward" in h and "step" in h]
    steps = built.counter.steps
    summary = common.write_metrics(out_dir, history, {
        "pipeline": "grpo", "adapter": settings.adapter, "base_model": settings.model_name_or_path, "metric": metric,
        "global_step": trainer.state.global_step, "resumed_from_step": inputs.start_step, "steps_this_run": steps,
        "wall_s": round(wall, 2), "tokens_per_s": None,            # completions vary in length: not counted
        "s_per_step": round(wall / steps, 3) if steps else None,
        "first_reward": rewards[0] if rewards else None, "final_reward": rewards[-1] if rewards else None,
        "sample_reward": sample_rewards, "replay_rows": inputs.replayed, "task_rows": inputs.n_task,
        "trainable_params": built.n_trainable, "total_params": built.n_total, "memory": loaded.memory,
        "processes": process.world, "timings_s": laps.timings,
    }, write=process.main)
    common.wait_for_everyone()
    echo(f"Done in {wall:.1f} s: step {trainer.state.global_step}, mean reward "
         f"{common.fmt(summary['first_reward'])} -> {common.fmt(summary['final_reward'])}")
    echo(f"Outputs in {out_dir}: {'adapter (PEFT)' if settings.adapter != 'full' else 'model weights'}, tokenizer, "
         "resolved_config.yaml, metrics.json, loss.png, reward.png, samples.md")
    return summary


def new_adapter(settings: GRPOSettings) -> bool:
    """Whether the run creates a LoRA adapter: not from an SFT adapter folder, which keeps training instead."""
    from rung.core.models import is_adapter_dir

    return settings.adapter != "full" and not is_adapter_dir(settings.model_name_or_path)


def load_policy(settings: GRPOSettings, device: device_mod.Device, echo) -> tuple[Any, Any, str]:
    """(model, tokenizer, base model spec). From an SFT LoRA folder (sft_then_grpo) the SFT adapter keeps training,
    so the output adapter stays relative to the original base (as DPO does, trainers/dpo.py); with --adapter full
    it is merged first."""
    import torch

    from rung.core.models import adapter_base, is_adapter_dir, load_model_and_tokenizer, load_tokenizer
    from rung.trainers.jobs import quant_storage_dtype

    spec = settings.model_name_or_path
    base = adapter_base(Path(spec)) if is_adapter_dir(spec) else spec
    model, tokenizer = load_model_and_tokenizer(
        base, trust_remote_code=settings.trust_remote_code,
        quantization="4bit" if settings.adapter == "qlora" else None,
        dtype=(torch.bfloat16 if device.kind == "cuda" and device.bf16 and settings.bf16 is not False else None),
        quant_storage=quant_storage_dtype() if settings.adapter == "qlora" else None)
    if base == spec:
        return model, tokenizer, base
    from peft import PeftModel

    tokenizer = load_tokenizer(spec, trust_remote_code=settings.trust_remote_code)
    if settings.adapter == "full":
        echo(f"Policy: the SFT adapter {spec} merged into {base} (full-weight GRPO)")
        return PeftModel.from_pretrained(model, spec).merge_and_unload(), tokenizer, base
    echo(f"Policy: the SFT adapter {spec} keeps training (on {base})")
    return PeftModel.from_pretrained(model, spec, is_trainable=True), tokenizer, base


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def plot_reward(out_dir: Path, log_history: list[dict], title: str) -> Path | None:
    """reward.png: the mean reward of each logged step's completions against step."""
    points = [(h["step"], h["reward"]) for h in log_history if "reward" in h and "step" in h]
    return common.plot_curves(out_dir / "reward.png", {"mean reward": points}, "reward", title)


# ---------------------------------------------------------------------------------------------- launched


def grpo_job(settings: GRPOSettings, data_path: str | Path, eval_path: str | Path | None,
             metric: str) -> dict[str, Any]:
    """The job's GRPO fields, after every data problem has been reported here, once, before any process starts."""
    data.load_train_eval(Path(data_path), Path(eval_path) if eval_path else None, "grpo", settings.eval_fraction,
                         settings.seed)
    return {"data": str(Path(data_path).resolve()), "metric": metric,
            "eval_data": str(Path(eval_path).resolve()) if eval_path else None}


def run_job(job: dict[str, Any], resume: bool, score: Score, replay_score: Score | None = None) -> dict[str, Any]:
    """One process of a launched GRPO run; the caller (engines/grpo.py) resolves the metric into `score`."""
    from rung.trainers.jobs import job_settings

    return train_grpo(job_settings(GRPOSettings, job), job["data"], job["out_dir"], score=score, metric=job["metric"],
                      eval_path=job.get("eval_data"), resume=bool(job.get("resume")) or resume,
                      replay_score=replay_score)


__all__ = ["build_grpo_config", "completion_text", "grpo_job", "run_job", "train_grpo", "trl_reward"]
