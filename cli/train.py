"""`rung train sft|dpo|grpo` (cpt: cli/train_cpt.py), their settings options and the cluster flags they share.

Only click, yaml and pure-Python rung modules are imported here (`rung --help` imports this module); torch,
transformers, trl and peft load inside the command bodies.

Settings precedence (TRL's TrlParser order): dataclass default < --config FILE (a settings mapping or a
plan.yaml) < flags < --set key=value, through core/resolve.py like `rung run`. The training flags and their
help come from the settings dataclasses' field metadata (core/settings.py, cli/options.py).

Before the first byte is written, `check_training` lists every problem at once (exit 2): settings types and
ranges, input files by kind (a regular file, not a folder, FIFO or device), the model spec, and --out (a
non-empty folder rung did not write needs --resume or --overwrite). A run that then fails before its first
checkpoint removes the --out folder it created (core/inputs.py fresh_output).

`--gpus N [--nodes N --node-rank R --main-address HOST --main-port P] [--strategy S] [--cpu] [--dry-run]` are the
same for sft, dpo and cpt (cluster_options): their problems join that list, and a run with more than one process
goes through the shared launcher (trainers/launch.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from rung.core.errors import RungError
from rung.core.fileio import MAX_TEXT_BYTES
from rung.core.inputs import check_model_spec, fresh_output, input_problem, out_dir_problems
from rung.cli.lazy import LazyGroup
from rung.cli.options import flag_layer, settings_options
from rung.core.resolve import Layer, parse_value, plan_layers, resolve
from rung.core.resolve import merge as merge_layers
from rung.core.settings import ClusterSettings, DPOSettings, GRPOSettings, SFTSettings

# ---------------------------------------------------------------------------------------------- train


@click.group(cls=LazyGroup, lazy_commands={"cpt": "rung.cli.train_cpt:cpt"})
def train() -> None:
    """Fine-tune a model: SFT, DPO, GRPO, or continued pretraining (cpt)."""


def set_layer(pairs: tuple[str, ...]) -> dict[str, Any]:
    """--set key=value (repeatable) -> {key: value read as YAML}. Keys and types are checked by the resolve."""
    values: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise RungError(f'--set "{pair}": expected key=value')
        key, raw = pair.split("=", 1)
        values[key.strip().replace("-", "_")] = parse_value(raw)
    return values


def config_layers(path: Path | None, engine: str) -> list[Layer]:
    """--config FILE: a mapping of settings, or a plan.yaml (its first `engine` step: plan layers + settings)."""
    if path is None:
        return []
    from rung.core.fileio import read_yaml

    content = read_yaml(path, what="config")
    if not isinstance(content, dict):
        raise RungError(f"{path}: expected a mapping of settings")
    if "steps" in content:
        steps = content["steps"] if isinstance(content["steps"], list) else []
        step = next((s for s in steps if isinstance(s, dict) and s.get("engine") == engine), None)
        if step is None:
            raise RungError(f"{path}: the plan has no {engine} step")
        settings = step.get("settings") if isinstance(step.get("settings"), dict) else {}
        return plan_layers(engine, content, step, str(path)) + [(f"{path}: steps.{step.get('id')}.settings", settings)]
    return [(str(path), dict(content.get("settings", content)))]


def resolve_training(cls: type, engine: str, config_file: Path | None, set_pairs: tuple[str, ...],
                     flags: dict[str, Any]):
    """default < --config < flags < --set: the same resolve `rung run` uses (core/resolve.py)."""
    return resolve(cls, config_layers(config_file, engine) + [("option", flag_layer(cls, flags)),
                                                              ("--set", set_layer(set_pairs))])


def check_training(cls: type, engine: str, *, config_file: Path | None, set_pairs: tuple[str, ...],
                   flags: dict[str, Any], out_dir: Path, resume: bool, overwrite: bool,
                   files: dict[str, Path | None], more: tuple[str, ...] = ()):
    """The settings of a `rung train` command, or one RungError listing every problem: settings (types and
    ranges), input files (`files`: flag -> path), the model spec and --out. Nothing is written before."""
    layers = config_layers(config_file, engine) + [("option", flag_layer(cls, flags)), ("--set", set_layer(set_pairs))]
    values, problems = merge_layers(cls, layers)
    problems = list(more) + problems
    problems += [p for flag, path in files.items()
                 if path is not None and (p := input_problem(path, f"{flag} file", MAX_TEXT_BYTES))]
    spec = values.get("model_name_or_path")
    if isinstance(spec, str):
        problem = check_model_spec(spec, Path.cwd(), "--base-model")[1]
        problems += [problem] if problem else []
    problems += out_dir_problems(out_dir, resume=resume, overwrite=overwrite)
    if problems:
        raise RungError(problems)
    return cls(**values)


def _training_options(cls: type):
    def decorate(function):
        function = click.option("--set", "set_pairs", multiple=True, metavar="KEY=VALUE",
                                help=f"Any {cls.__name__} field (TRL names), e.g. --set lr_scheduler_type=linear; "
                                     "repeatable; wins over every other source.")(function)
        function = click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
                                help="YAML of settings, or a plan.yaml (its step's settings); flags win.")(function)
        function = click.option("--overwrite", is_flag=True,
                                help="Write into a non-empty --out that rung did not create (files of the same "
                                     "name are replaced).")(function)
        function = click.option("--resume", is_flag=True,
                                help="Continue from the last checkpoint in --out at the step it reached.")(function)
        function = settings_options(cls)(function)
        function = click.option("--eval", "eval_file", type=click.Path(path_type=Path), default=None,
                                help="Eval file (same shape as --data); default: hold out --eval-fraction.")(function)
        function = click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
                                help="Output folder: adapter or weights, tokenizer, metrics, plots, checkpoints.")(function)
        function = click.option("--data", "data_file", type=click.Path(path_type=Path), required=True,
                                help="Training data, JSONL or JSON (see `rung data check`).")(function)
        return function
    return decorate


# ---------------------------------------------------------------------------------------------- several GPUs

CLUSTER_FLAGS = ("gpus", "nodes", "node_rank", "main_address", "main_port", "cpu", "strategy", "dry_run")


def cluster_options(function):
    """--gpus --nodes --node-rank --main-address --main-port --cpu (core/settings.py ClusterSettings, the flags `rung
    run` has too) and --strategy --dry-run: how `rung train sft|dpo|grpo|cpt` starts through `accelerate launch`
    (trainers/launch.py). The command pops them with pop_cluster."""
    function = click.option("--dry-run", is_flag=True, help="Write the accelerate config and job file, print the "
                                                            "exact command; train nothing.")(function)
    function = click.option("--strategy", type=click.Choice(["ddp", "fsdp", "zero2", "zero3"]), default=None,
                            help="Distributed strategy; default: chosen from the estimator's memory figure.")(function)
    return settings_options(ClusterSettings, values=True)(function)


def pop_cluster(flags: dict[str, Any]) -> dict[str, Any]:
    """The cluster flags out of a command's **flags (the rest are settings)."""
    return {name: flags.pop(name) for name in CLUSTER_FLAGS}


def cluster_problems(cluster: dict[str, Any]) -> tuple[str, ...]:
    """The cluster flags' problems, one line each, for check_training's list (nothing is written before)."""
    from rung.trainers.launch import cluster_problems as problems

    return tuple(problems(gpus=cluster["gpus"], nodes=cluster["nodes"], node_rank=cluster["node_rank"],
                          main_address=cluster["main_address"], main_port=cluster["main_port"],
                          strategy=cluster["strategy"], cpu=cluster["cpu"]))


def launches(cluster: dict[str, Any]) -> bool:
    """Whether the command goes through `accelerate launch` (or prints it: --dry-run) instead of this process."""
    return cluster["gpus"] > 1 or cluster["nodes"] > 1 or cluster["dry_run"]


def require_gpus(cluster: dict[str, Any]) -> None:
    """A real launch on GPUs needs CUDA here: say so in one line, with the --cpu alternative."""
    if cluster["dry_run"] or cluster["cpu"] or not launches(cluster):
        return
    import torch

    if not torch.cuda.is_available():
        raise RungError(f"--gpus {cluster['gpus']}: this machine has no CUDA GPU; add --cpu to run "
                        f"{cluster['gpus']} CPU processes (gloo) instead")


def output_guard(out_dir: Path, cluster: dict[str, Any]):
    """fresh_output on one node; several nodes share --out, and one failing node must not remove what the
    others write."""
    import contextlib

    return fresh_output(out_dir) if cluster["nodes"] == 1 else contextlib.nullcontext()


def launch_pipeline(pipeline: str, settings: Any, out_dir: Path, *, job: dict[str, Any], cluster: dict[str, Any],
                    resume: bool) -> dict[str, Any] | None:
    """`rung train sft|dpo --gpus N ...`: write the launch files and run `accelerate launch` (or print it);
    returns the main process's metrics.json on the rank-0 node after a real run, else None."""
    import json

    from rung.trainers.launch import launch

    require_gpus(cluster)
    launch(pipeline, settings, out_dir, job=job, gpus=cluster["gpus"], nodes=cluster["nodes"],
           node_rank=cluster["node_rank"], main_address=cluster["main_address"], main_port=cluster["main_port"],
           strategy=cluster["strategy"], cpu=cluster["cpu"], resume=resume, dry_run=cluster["dry_run"],
           echo=click.echo)
    metrics = Path(out_dir) / "metrics.json"
    if cluster["dry_run"] or not metrics.is_file():
        return None
    summary = json.loads(metrics.read_text())
    loss = summary.get("final_loss")
    click.echo(f"Done on {summary.get('processes')} processes: step {summary.get('global_step')}, final loss "
               f"{loss if not isinstance(loss, float) else round(loss, 4)}; outputs in {out_dir}")
    return summary


@train.command("sft")
@_training_options(SFTSettings)
@cluster_options
def sft(data_file: Path, out_dir: Path, eval_file: Path | None, resume: bool, overwrite: bool,
        config_file: Path | None, set_pairs: tuple[str, ...], **flags: Any) -> None:
    """Fine-tune on demonstrations (SFT) with LoRA, QLoRA or full weights.

    With --gpus N (or --nodes) the run starts through `accelerate launch` (DDP, FSDP, FSDP + QLoRA or DeepSpeed,
    chosen from the memory estimate unless --strategy); --dry-run prints the exact command."""
    from rung.trainers.sft import sft_job, train_sft

    train_or_launch("sft", SFTSettings, sft_job, train_sft, data_file, out_dir, eval_file, resume, overwrite,
                    config_file, set_pairs, flags)


@train.command("dpo")
@_training_options(DPOSettings)
@cluster_options
def dpo(data_file: Path, out_dir: Path, eval_file: Path | None, resume: bool, overwrite: bool,
        config_file: Path | None, set_pairs: tuple[str, ...], **flags: Any) -> None:
    """Tune toward preferred answers (DPO), from a base model or an SFT output folder.

    With --gpus N (or --nodes) the run starts through `accelerate launch`, as for sft; --dry-run prints the exact
    command."""
    from rung.trainers.dpo import dpo_job, train_dpo

    train_or_launch("dpo", DPOSettings, dpo_job, train_dpo, data_file, out_dir, eval_file, resume, overwrite,
                    config_file, set_pairs, flags)


def train_or_launch(engine: str, cls: type, job: Callable, train_fn: Callable, data_file: Path, out_dir: Path,
                    eval_file: Path | None, resume: bool, overwrite: bool, config_file: Path | None,
                    set_pairs: tuple[str, ...], flags: dict[str, Any]) -> None:
    """`rung train sft|dpo`: check everything, then train here (`train_fn`) or through `accelerate launch` (`job`:
    the launch's job fields, trainers/sft.py sft_job or trainers/dpo.py dpo_job)."""
    cluster = pop_cluster(flags)
    settings = check_training(cls, engine, config_file=config_file, set_pairs=set_pairs, flags=flags,
                              out_dir=out_dir, resume=resume, overwrite=overwrite,
                              files={"--data": data_file, "--eval": eval_file}, more=cluster_problems(cluster))
    with output_guard(out_dir, cluster):
        if launches(cluster):
            launch_pipeline(engine, settings, out_dir, job=job(settings, data_file, eval_file), cluster=cluster,
                            resume=resume)
        else:
            train_fn(settings, data_file, out_dir, eval_path=eval_file, resume=resume)


@train.command("grpo")
@_training_options(GRPOSettings)
@cluster_options
def grpo(data_file: Path, out_dir: Path, eval_file: Path | None, resume: bool, overwrite: bool,
         config_file: Path | None, set_pairs: tuple[str, ...], **flags: Any) -> None:
    """Reinforce answers your checker scores well (GRPO), with a metric as the reward.

    --data holds prompts (chat rows, prompt/completion, input/output, or a prompt alone for a checker that needs no
    reference); --metric names the reward (engines/metrics.py: exact_match, json_schema, regex, ...; default: chosen
    from the rows as `rung gate` chooses it). With --gpus N the run starts through `accelerate launch`."""
    from rung.engines import grpo as engine

    cluster = pop_cluster(flags)
    settings = check_training(GRPOSettings, "grpo", config_file=config_file, set_pairs=set_pairs, flags=flags,
                              out_dir=out_dir, resume=resume, overwrite=overwrite,
                              files={"--data": data_file, "--eval": eval_file}, more=cluster_problems(cluster))
    metric, score, replay_score = engine.prepare(settings, data_file, eval_file, goal="")
    from rung.trainers.grpo import grpo_job, train_grpo

    with output_guard(out_dir, cluster):
        if launches(cluster):
            from rung.trainers.launch import launch

            require_gpus(cluster)
            launch("grpo", settings, out_dir, job=grpo_job(settings, data_file, eval_file, metric),
                   gpus=cluster["gpus"], nodes=cluster["nodes"], node_rank=cluster["node_rank"],
                   main_address=cluster["main_address"], main_port=cluster["main_port"], strategy=cluster["strategy"],
                   cpu=cluster["cpu"], resume=resume, dry_run=cluster["dry_run"], echo=click.echo,
                   module=engine.WORKER_MODULE)
        else:
            train_grpo(settings, data_file, out_dir, score=score, metric=metric, eval_path=eval_file, resume=resume,
                       replay_score=replay_score)


__all__ = ["train", "sft", "dpo", "grpo"]
