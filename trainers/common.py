"""What the SFT, DPO, GRPO and CPT pipelines truly share. Each pipeline file reads top to bottom through the same
phases (check inputs, load, build the trainer, train, write outputs) and uses these pieces:

- print the resolved settings and save `resolved_config.yaml` before any work (torchtune's habit);
- this process's place in a launched run (Process), phase timings (Laps), rung's progress lines and the step
  counter (count_steps), the timed trainer.train() (timed_train), the final save (save_trained);
- one summary (Summary: the same keys from every trainer) written as `metrics.json` from the trainer's log
  history; `loss.png`; `samples.md`, before and after;
- the last checkpoint for `--resume`, and a refusal to silently restart over existing checkpoints;
- the device, its TrainingArguments and the memory check live in trainers/device.py.

Heavy imports live inside functions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, TypedDict

import yaml

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, atomic_write_yaml
from rung.core.models import quiet_libraries  # noqa: F401  (the pipelines call common.quiet_libraries)
from rung.core.rows import conversation, normalise
from rung.core.settings import RUNG_ONLY_FIELDS

Echo = Callable[[str], None]
CHECKPOINTS = "checkpoints"  # DIR/checkpoints/checkpoint-<step>: kept apart from the final outputs


# ---------------------------------------------------------------------------------------------- config


def resolved_config(settings: Any, **extra: Any) -> dict[str, Any]:
    return {**extra, "settings": dataclasses.asdict(settings)}


def announce_config(config: dict[str, Any], out_dir: Path, echo: Echo, *, show: bool = True) -> None:
    """Print the merged config (default < plan.yaml < flag) and save it beside the outputs. show=False (a `rung
    run` step: the run printed the resolved settings once already) prints one line naming the file."""
    atomic_write_yaml(out_dir / "resolved_config.yaml", config)
    if not show:
        echo(f"Resolved config saved to {out_dir / 'resolved_config.yaml'} (the step's settings printed above)")
        return
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)
    echo("Resolved config (saved to " + str(out_dir / "resolved_config.yaml") + "):")
    for line in text.rstrip().splitlines():
        echo("  " + line)


def trl_fields(settings: Any, config_cls: type) -> dict[str, Any]:
    """Settings that the TRL config class knows, minus rung-only ones. One place so SFT and DPO agree."""
    known = {f.name for f in dataclasses.fields(config_cls)}
    values = {k: v for k, v in dataclasses.asdict(settings).items() if k not in RUNG_ONLY_FIELDS}
    if "activation_checkpointing" in known and "gradient_checkpointing" in values:
        # transformers 5 renamed it; the old name still works but warns (TRL's default for it is True)
        values["activation_checkpointing"] = values.pop("gradient_checkpointing")
    if "warmup_ratio" not in known and "warmup_ratio" in values:
        # transformers 5 dropped warmup_ratio: warmup_steps takes a float in [0, 1) as a ratio of all steps
        ratio = values.pop("warmup_ratio")
        if ratio and "warmup_steps" in known:
            values["warmup_steps"] = float(ratio)
    unknown = sorted(k for k in values if k not in known)
    if unknown:  # a settings field TRL does not have would be ignored silently: refuse instead
        raise RungError(f"settings {', '.join(unknown)} are not {config_cls.__name__} fields in this TRL version")
    if values.get("eval_strategy") != "no" and values.get("eval_steps") is None:
        values.pop("eval_steps", None)
    if os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "").lower() == "true":
        # a launched FSDP run whose accelerate config checkpoints activations (trainers/launch.py): the Trainer
        # refuses its own checkpointing on top of FSDP's
        for key in ("activation_checkpointing", "gradient_checkpointing"):
            if key in values:
                values[key] = False
    return values


# ---------------------------------------------------------------------------------------------- checkpoints


def checkpoint_dir(out_dir: Path) -> Path:
    return out_dir / CHECKPOINTS


def last_checkpoint(out_dir: Path, complete: Callable[[Path], bool] | None = None) -> Path | None:
    """The checkpoint with the highest step that is complete: it has a trainer_state.json (the Trainer's last
    write, so a run killed mid-save falls back one checkpoint), or passes `complete` (CPT also needs its data
    cursor in that file)."""
    folder = checkpoint_dir(out_dir)
    if not folder.is_dir():
        return None
    complete = complete or (lambda child: (child / "trainer_state.json").exists())
    best: tuple[int, Path] | None = None
    for child in folder.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", child.name)
        if match and complete(child):
            step = int(match.group(1))
            if best is None or step > best[0]:
                best = (step, child)
    return best[1] if best else None


def resume_point(out_dir: Path, resume: bool, echo: Echo) -> tuple[str | None, int]:
    """(checkpoint path for trainer.train, its step). Refuses to start over existing checkpoints silently."""
    last = last_checkpoint(out_dir)
    step = int(last.name.split("-")[1]) if last else 0
    if resume:
        if last is None:
            echo(f"--resume: no checkpoint in {checkpoint_dir(out_dir)}; starting at step 0")
            return None, 0
        echo(f"Resuming from {last} at step {step}")
        return str(last), step
    if last is not None:
        raise RungError(f"{out_dir} already has checkpoints (last: step {step}); pass --resume to continue "
                        "from there, or choose another --out")
    return None, 0


def step_counter():
    """A TrainerCallback counting the optimizer steps this process ran (resume proof for metrics.json); it also
    logs the last step, so metrics.json's final_loss is never an earlier step's."""
    from transformers import TrainerCallback

    class StepCounter(TrainerCallback):
        def __init__(self):
            self.steps = 0
            self.first_step: int | None = None
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1
            if self.first_step is None:
                self.first_step = state.global_step
            if state.max_steps and state.global_step >= state.max_steps:
                control.should_log = True  # so "final loss" is the last step's, whatever logging_steps is

    return StepCounter()


# ---------------------------------------------------------------------------------------------- the summary


class Summary(TypedDict, total=False):
    """What every train_* returns and metrics.json starts with: one set of keys for sft, dpo, cpt and grpo.

    The shared keys (SUMMARY_KEYS) first; then keys several pipelines have; then each pipeline's own, which
    only that pipeline writes. A number a pipeline does not measure is None (DPO and GRPO count no tokens/s)."""

    pipeline: str                      # "sft", "dpo", "cpt" or "grpo"
    first_loss: float | None           # the first logged training loss
    final_loss: float | None           # the last one (the last step always logs: step_counter)
    final_eval_loss: float | None      # the last held-out loss (CPT: the held-out domain blocks)
    global_step: int                   # optimizer steps, a resumed run's earlier ones included
    wall_s: float                      # seconds in trainer.train() this run
    tokens_per_s: float | None         # training tokens per second this run
    processes: int                     # 1, or the processes of a launched run
    # several pipelines
    adapter: str
    base_model: str                    # settings.model_name_or_path: where training started
    resumed_from_step: int             # the checkpoint's step (0: from the start)
    steps_this_run: int
    train_runtime_s: float | None      # the Trainer's own figures (its last log record)
    train_loss_mean: float | None
    trainable_params: int
    total_params: int
    replay_rows: int                   # sft, grpo: general rows mixed in against forgetting (trainers/replay.py)
    task_rows: int
    memory: dict[str, Any] | None      # the memory check (one process only)
    timings_s: dict[str, float]        # sft, grpo: seconds per phase around trainer.train()
    log_history: list[dict[str, Any]]
    # sft
    train_tokens_per_epoch: int
    assistant_only_loss: bool
    answers_only_as_completions: bool
    eos_token: str | None
    token_stats: dict[str, Any]
    base_4bit_linears: int
    # dpo
    reference_model: str               # what the reference is, in words
    pairs_before: dict[str, float] | None   # training pairs' reward margin, accuracy and loss before and after
    pairs_after: dict[str, float] | None
    eval_reward_margin: float | None
    eval_accuracy: float | None
    # grpo
    metric: str                        # the reward's metric (engines/metrics.py)
    first_reward: float | None         # the mean reward of the first and the last logged step
    final_reward: float | None
    s_per_step: float | None
    sample_reward: dict[str, float]    # the held-out samples' mean reward before and after
    # cpt
    model_dir: str
    resumed_from: str | None           # the checkpoint's folder name
    max_steps: int
    global_batch_blocks: int
    block_size: int
    train_tokens_in_corpus: int
    tokens_trained: int
    throughput: dict[str, Any]         # trainers/throughput.py: tokens_per_second, MFU, FLOPs per token
    forgetting: list[dict[str, Any]]   # trainers/forgetting.py: domain and general perplexity by step
    warnings: list[str]
    data: dict[str, Any]               # the block stream's cursor and counts (--resume's proof)


# the keys every trainer reports, whatever it trains (engines/training.py hands them on as a step's metrics)
SUMMARY_KEYS = ("final_loss", "final_eval_loss", "global_step", "wall_s", "tokens_per_s", "first_loss", "processes")


# ---------------------------------------------------------------------------------------------- outputs


def write_metrics(out_dir: Path, log_history: list[dict], extra: dict[str, Any], *,
                  write: bool = True) -> dict[str, Any]:
    """metrics.json: the final numbers first, then the full log history (write=False: the summary only, for the
    processes of a launched run other than the main one)."""
    train_logs = [h for h in log_history if "loss" in h and "step" in h]
    eval_logs = [h for h in log_history if "eval_loss" in h]
    summary: dict[str, Any] = dict(extra)
    if train_logs:
        summary["first_loss"] = train_logs[0]["loss"]
        summary["final_loss"] = train_logs[-1]["loss"]
    if eval_logs:
        summary["final_eval_loss"] = eval_logs[-1]["eval_loss"]
    final = next((h for h in reversed(log_history) if "train_runtime" in h), None)
    if final:
        summary["train_runtime_s"] = final.get("train_runtime")
        summary["train_loss_mean"] = final.get("train_loss")
    summary["log_history"] = log_history
    if write:
        from rung.trainers.model_card import write_card

        atomic_write_json(out_dir / "metrics.json", _jsonable(summary))
        write_card(Path(out_dir), summary)
    return summary


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def plot_loss(out_dir: Path, log_history: list[dict], title: str) -> Path | None:
    """loss.png: training loss (and eval loss) against step, from the trainer's log history."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    return plot_curves(out_dir / "loss.png", {"train loss": train, "eval loss": evals}, "loss", title,
                       markers={"eval loss": "o"})


def plot_curves(path: Path, curves: dict[str, list[tuple[float, float]]], ylabel: str, title: str, *,
                markers: dict[str, str] | None = None) -> Path | None:
    """A PNG of named (step, value) curves, written atomically (loss.png, reward.png); None when all are empty."""
    if not any(curves.values()):
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for label, points in curves.items():
        if points:
            ax.plot(*zip(*points), label=label,
                    marker=(markers or {}).get(label, "." if len(points) < 30 else None))
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def prompt_of(example: dict) -> tuple[Any, str]:
    """(prompt for generation, reference answer) from a normalised example (messages / prompt-completion /
    preference), through core/rows.py: a chat keeps its system message and earlier turns; a text prompt stays
    text (TRL trained it without the chat template)."""
    row = normalise(example)
    if row is None:
        raise RungError(f"not a chat, prompt/completion or preference row: keys {', '.join(sorted(example))}")
    return (example["prompt"] if isinstance(example.get("prompt"), str) else conversation(row)), row["output"]


def write_samples(out_dir: Path, prompts: list[Any], references: list[str], before: list[str],
                  after: list[str], title: str) -> None:
    """samples.md: the same held-out prompts answered before and after training, with the reference."""
    lines = [f"# {title}: samples before and after training", "",
             "Greedy decoding (no repeated 8-gram, which breaks a base model's loops), the same held-out prompts, "
             "the model's chat template.", ""]
    for index, (prompt, reference, b, a) in enumerate(zip(prompts, references, before, after), start=1):
        shown = prompt[-1]["content"] if isinstance(prompt, list) else prompt
        lines += [f"## {index}. {_one_line(shown)}", "", f"- reference: `{_one_line(reference)}`",
                  f"- before: `{_one_line(b) or '(empty)'}`", f"- after: `{_one_line(a) or '(empty)'}`", ""]
    atomic_write_text(out_dir / "samples.md", "\n".join(lines))


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split()).replace("`", "'")
    return text if len(text) <= limit else text[:limit] + " ..."


def progress_callback(echo: Echo):
    """One short line per log instead of the trainer's progress bar and raw dicts."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            at = f"  step {state.global_step}/{state.max_steps}"
            if "loss" in logs:
                extra = f"  reward {logs['reward']:.3f}" if "reward" in logs else ""  # GRPO: the metric's mean
                if "rewards/margins" in logs:
                    extra = (f"  reward margin {logs['rewards/margins']:.3f}"
                             f"  chosen>rejected {logs.get('rewards/accuracies', 0):.0%}")
                echo(f"{at}  loss {logs['loss']:.4f}  lr {logs.get('learning_rate', 0):.2e}{extra}")
            elif "eval_loss" in logs:
                echo(f"{at}  eval loss {logs['eval_loss']:.4f}")

    return Progress()


def remove_progress_bars(trainer) -> None:
    """Take the Trainer's progress bar and raw log printing off (rung prints one line per log instead)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def use_rung_progress(trainer, echo: Echo) -> None:
    remove_progress_bars(trainer)
    trainer.add_callback(progress_callback(echo))


def end_of_turn_token(tokenizer) -> tuple[str | None, str]:
    """(token that ends an assistant turn in the chat template, note).

    TRL 1.16 adds EOS only to text rows; for conversational rows the chat template alone decides what ends
    an assistant turn. If that token is not the tokenizer's EOS, generation will not stop on it, so the
    pipelines set TRL's `eos_token` to it (TRL then mirrors it onto the model's generation config)."""
    sentinel = "RUNGENDPROBE"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": sentinel}], tokenize=False)
    except Exception as error:  # a template that cannot render a plain user/assistant pair
        return None, f"the chat template failed to render a user/assistant pair ({error})"
    after = text[text.rfind(sentinel) + len(sentinel):]
    if tokenizer.eos_token and after.startswith(tokenizer.eos_token):
        return tokenizer.eos_token, f"assistant turns end with {tokenizer.eos_token} (the EOS token)"
    specials = sorted(set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {})),
                      key=len, reverse=True)
    for token in specials:
        if token and after.lstrip().startswith(token):
            return token, (f"assistant turns end with {token}, not the EOS {tokenizer.eos_token}: "
                           f"using {token} as EOS so the model learns to stop and generation stops there")
    return None, ("the chat template puts no stop token after an assistant turn: the model may not learn to stop; "
                  "use a template that ends turns with EOS (rung's ChatML does)")


HELDOUT = "heldout.jsonl"  # the rows a run held out, as trained on: what `rung gate` scores after training


def write_heldout(out_dir: Path, rows: list[dict]) -> Path | None:
    """Save the held-out rows exactly as training read them (chat messages, prompt/completion or preference
    pairs, system messages included), so the ship gate asks the candidate what training showed it, on rows
    training never saw (core/rows.py reads them back)."""
    if not rows:
        return None
    path = Path(out_dir) / HELDOUT
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def fmt(value: Any) -> str:
    """A number for a summary line: 4 significant digits for floats, as is otherwise."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def process_place() -> tuple[int, int]:
    """(rank, world size) of this process: torchrun's RANK and WORLD_SIZE under `accelerate launch`, else (0, 1).
    Read from the environment, so a pipeline knows before any import whether it is the main process."""
    return int(os.environ.get("RANK", "0")), max(1, int(os.environ.get("WORLD_SIZE", "1")))


def join_processes(device_kind: str) -> None:
    """In a launched run, start accelerate's process state now (the process group, and torch.cuda's current
    device = this rank's GPU), before any weight loads: model.to("cuda") and bitsandbytes' device_map then
    put each rank's copy on its own GPU."""
    if process_place()[1] > 1:
        from accelerate import PartialState

        PartialState(cpu=device_kind == "cpu")


def silent(_line: str) -> None:
    """The echo of every process but the main one in a launched run."""


@dataclasses.dataclass
class Process:
    """This process's place in a run: rank 0 of 1 alone, or one of `world` processes `accelerate launch` started.
    Only the main process prints (echo is silent elsewhere) and writes the run folder's files."""

    rank: int
    world: int
    echo: Echo

    @property
    def main(self) -> bool:
        return self.rank == 0


def this_process(echo: Echo) -> Process:
    """Read from the environment (process_place), so a pipeline knows before any import whether it is the main one."""
    rank, world = process_place()
    return Process(rank=rank, world=world, echo=echo if rank == 0 else silent)


class Laps:
    """Seconds per phase, in metrics.json's timings_s: what rung adds around trainer.train()."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.clock = time.perf_counter()

    def __call__(self, name: str, seconds: float | None = None) -> None:
        """Close the phase `name` now (or record `seconds` for it) and start timing the next one."""
        now = time.perf_counter()
        self.timings[name] = round(now - self.clock if seconds is None else seconds, 3)
        self.clock = now


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameters of the model the trainer wraps."""
    return (sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()))


def count_steps(trainer, echo: Echo):
    """rung's progress lines instead of the Trainer's, and the step counter (returned) that metrics.json reads."""
    use_rung_progress(trainer, echo)
    counter = step_counter()
    trainer.add_callback(counter)
    return counter


def timed_train(trainer, checkpoint: str | None) -> float:
    """run_trainer from `checkpoint`; the seconds it took (metrics.json's wall_s)."""
    started = time.perf_counter()
    run_trainer(trainer, checkpoint)
    return time.perf_counter() - started


def save_trained(trainer, tokenizer, out_dir: Path, main: bool) -> None:
    """The trained adapter or weights (every process takes part: FSDP gathers the shards) and, from the main
    process, the tokenizer; the Trainer's pickled arguments go (resolved_config.yaml holds the settings)."""
    save_full_state(trainer)
    trainer.save_model(str(out_dir))
    if main:
        (out_dir / "training_args.bin").unlink(missing_ok=True)
        tokenizer.save_pretrained(str(out_dir))


def samples_or_note(out_dir: Path, process: Process, prompts: list[Any], references: list[str], before: list[str],
                    after: list[str], title: str, *, samples: bool, note_title: str) -> None:
    """samples.md: the answers before and after (samples=True), else, on the main process, why there are none."""
    if samples:
        write_samples(out_dir, prompts, references, before, after, title)
    elif process.main:
        skipped_samples_note(out_dir, note_title, process.world)


def run_trainer(trainer, checkpoint: str | None):
    """trainer.train() from `checkpoint` (None: from the start). rung's one call into the library's loop: tests
    stop a real, fully built trainer here (rung's own seam) instead of patching the library's classes."""
    return trainer.train(resume_from_checkpoint=checkpoint)


def save_full_state(trainer) -> None:
    """Before the final save under FSDP with SHARDED_STATE_DICT checkpoints (FSDP + QLoRA): switch to a full state
    dict, so the adapter is written as ordinary safetensors (PEFT's examples/sft/train.py does the same)."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if plugin is not None and "FULL_STATE_DICT" not in str(plugin.state_dict_type):
        plugin.set_state_dict_type("FULL_STATE_DICT")


def wait_for_everyone() -> None:
    """A barrier in a launched run (every rank's files are written before the launcher returns); else nothing."""
    if process_place()[1] > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def skipped_samples_note(out_dir: Path, title: str, world: int) -> None:
    """samples.md when the weights are sharded over the processes (FSDP, ZeRO-3): no process holds the whole
    model to generate with, so say how to get the samples instead."""
    atomic_write_text(out_dir / "samples.md",
                      f"# {title}: samples before and after training\n\nSkipped: the weights were sharded over "
                      f"{world} processes, so no process held the whole model to generate with. Answer the "
                      f"held-out prompts ({HELDOUT}) with `rung generate {out_dir} --prompt ...` or `rung gate`.\n")


def final_eval(trainer, has_eval: bool) -> dict[str, Any]:
    """The eval metrics at the last step: reuse the Trainer's own eval when it ran there, else evaluate now."""
    last = next((h for h in reversed(trainer.state.log_history) if "eval_loss" in h), None)
    if last and last.get("step") == trainer.state.global_step:
        return last
    return trainer.evaluate() if has_eval else {}
