"""`rung data check`, `rung train sft|dpo|cpt`, `rung merge`, `rung chat`, `rung generate`.

Only click, yaml and pure-Python rung modules are imported here (`rung --help` imports this module); torch,
transformers, trl and peft load inside the command bodies.

Settings precedence (TRL's TrlParser order): dataclass default < --config FILE (a settings mapping or a
plan.yaml) < flags < --set key=value, through core/resolve.py like `rung run`. The training flags and their
help come from the settings dataclasses' field metadata (core/settings.py, core/options.py).

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
from typing import Any

import click

from rung.core.errors import RungError
from rung.core.fileio import MAX_TEXT_BYTES
from rung.core.vocab import MAX_NEW_TOKENS
from rung.core.inputs import check_model_spec, fresh_output, input_problem, out_dir_problems
from rung.core.lazy import LazyGroup
from rung.core.options import Checked, field_type, flag_layer, settings_options
from rung.core.resolve import Layer, parse_value, plan_layers, resolve
from rung.core.resolve import merge as merge_layers
from rung.core.settings import DPOSettings, SFTSettings

# ---------------------------------------------------------------------------------------------- data


@click.group()
def data() -> None:
    """Check fine-tuning data before training."""


@data.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--kind", type=click.Choice(["sft", "dpo", "text", "grpo"]), default=None,
              help="What the file is for; guessed from the keys of the first row when omitted.")
@click.option("--base-model", default="builtin:tiny", show_default=True,
              help="Model whose tokenizer and chat template count the tokens (hub id, folder or builtin:tiny).")
@click.option("--max-length", type=field_type(SFTSettings, "max_length"), default=1024, show_default=True,
              help="Token limit per example used in training (SFT/DPO max_length, CPT block size).")
@click.option("--packing/--no-packing", default=False, show_default=True,
              help="Whether SFT will pack examples (changes what happens to over-long examples).")
@click.option("--eval", "eval_file", type=click.Path(path_type=Path), default=None,
              help="A separate eval file: checked too, and used instead of a held-out split.")
@click.option("--eval-fraction", type=field_type(SFTSettings, "eval_fraction"), default=0.1, show_default=True,
              help="Share held out for eval when no --eval file is given.")
@click.option("--seed", type=field_type(SFTSettings, "seed"), default=42, show_default=True,
              help="Seed of the held-out split.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the tokenizer's own code to run (off by default).")
def check(file: Path, kind: str | None, base_model: str, max_length: int, packing: bool, eval_file: Path | None,
          eval_fraction: float, seed: int, trust_remote_code: bool) -> None:
    """Check a data file: every problem with its line, token statistics, duplicates and the split."""
    from rung.trainers import data as data_mod

    problems = [p for p in (input_problem(file, "data file", MAX_TEXT_BYTES),
                            eval_file and input_problem(eval_file, "--eval file", MAX_TEXT_BYTES),
                            check_model_spec(base_model, Path.cwd(), "--base-model")[1]) if p]
    if problems:
        raise RungError(problems)
    report = data_mod.check_file(file, kind)
    shapes = ", ".join(f"{name} {count}" for name, count in report.shapes.items()) or "none usable"
    click.echo(f"{file}: {len(report.rows)} usable rows, kind {report.kind} ({shapes})")
    eval_report = data_mod.check_file(eval_file, report.kind) if eval_file else None
    problems = report.problems + (eval_report.problems if eval_report else [])
    click.echo(f"Problems: {f'{len(problems)} (listed at the end)' if problems else 'none'}")
    if report.rows:
        from rung.core.models import load_tokenizer

        tokenizer = load_tokenizer(base_model, trust_remote_code=trust_remote_code)
        stats = data_mod.token_stats(report.examples, tokenizer, max_length)
        how = "chat template" if tokenizer.chat_template and report.kind != "text" else "plain text + EOS"
        click.echo(f"Tokens per example ({base_model} tokenizer, {how}): min {stats['min']}, mean {stats['mean']}, "
                   f"p95 {stats['p95']}, max {stats['max']}; {stats['total_tokens']:,} in all")
        over = stats["over_max_length"]
        if over:
            lines = ", ".join(str(report.rows[i].line) for i in over[:10]) + (" ..." if len(over) > 10 else "")
            click.echo(f"Longer than max_length {max_length}: {len(over)} (lines {lines})")
            click.echo("  " + data_mod.truncation_note(report.kind, len(over), len(stats["prompt_fills_max_length"]),
                                                      max_length, packing))
        else:
            click.echo(f"Longer than max_length {max_length}: none")
        if report.duplicates:
            click.echo("Duplicates: " + report.warnings[0])
        else:
            click.echo("Duplicates: none")
        if eval_report is not None:
            train_keys = {data_mod.example_fingerprint(e) for e in report.examples}
            leaked = [r.line for r in eval_report.rows if data_mod.example_fingerprint(r.example) in train_keys]
            click.echo(f"Split: {len(report.rows)} train / {len(eval_report.rows)} eval rows from {eval_file}"
                       + (f"; {len(leaked)} eval rows also appear in train (lines {leaked[:10]})" if leaked else ""))
        elif report.kind != "text":
            train, held = data_mod.split_examples(report.examples, eval_fraction, seed)
            click.echo(f"Split: {len(train)} train / {len(held)} eval "
                       + (f"({eval_fraction:.0%} held out with seed {seed}, as `rung train` will do)" if held
                          else "(fewer than 10 rows: no eval split)"))
    if problems:
        data_mod.raise_problems(problems)


# ---------------------------------------------------------------------------------------------- train


@click.group(cls=LazyGroup, lazy_commands={"cpt": "rung.trainers.cli_cpt:cpt"})
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

CLUSTER_FLAGS = ("gpus", "nodes", "node_rank", "main_address", "main_port", "strategy", "cpu", "dry_run")


def cluster_options(function):
    """--gpus --nodes --node-rank --main-address --main-port --strategy --cpu --dry-run: how `rung train sft|dpo|cpt`
    starts through `accelerate launch` (trainers/launch.py). The command pops them with pop_cluster."""
    options = [
        click.option("--gpus", type=Checked(int, minimum=1), default=1, show_default=True,
                     help="Processes (GPUs) per node; more than 1 starts the run through `accelerate launch`."),
        click.option("--nodes", type=Checked(int, minimum=1), default=1, show_default=True,
                     help="Machines taking part (num_machines)."),
        click.option("--node-rank", type=Checked(int, minimum=0), default=0, show_default=True,
                     help="This machine's rank, 0..nodes-1 (run the same command on every node, changing only this)."),
        click.option("--main-address", default=None, help="Address of the rank-0 node (several nodes)."),
        click.option("--main-port", type=Checked(int, minimum=0, maximum=65535), default=29500, show_default=True,
                     help="Port on the rank-0 node for the process group (0: pick a free one, single node only)."),
        click.option("--strategy", type=click.Choice(["ddp", "fsdp", "zero2", "zero3"]), default=None,
                     help="Distributed strategy; default: chosen from the estimator's memory figure."),
        click.option("--cpu", is_flag=True, help="Run the --gpus N processes on CPU (gloo): tests the distributed path "
                                                 "without GPUs."),
        click.option("--dry-run", is_flag=True, help="Write the accelerate config and job file, print the exact "
                                                     "command; train nothing."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


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
    cluster = pop_cluster(flags)
    settings = check_training(SFTSettings, "sft", config_file=config_file, set_pairs=set_pairs, flags=flags,
                              out_dir=out_dir, resume=resume, overwrite=overwrite,
                              files={"--data": data_file, "--eval": eval_file}, more=cluster_problems(cluster))
    from rung.trainers.sft import sft_job, train_sft

    with output_guard(out_dir, cluster):
        if launches(cluster):
            launch_pipeline("sft", settings, out_dir, job=sft_job(settings, data_file, eval_file), cluster=cluster,
                            resume=resume)
        else:
            train_sft(settings, data_file, out_dir, eval_path=eval_file, resume=resume)


@train.command("dpo")
@_training_options(DPOSettings)
@cluster_options
def dpo(data_file: Path, out_dir: Path, eval_file: Path | None, resume: bool, overwrite: bool,
        config_file: Path | None, set_pairs: tuple[str, ...], **flags: Any) -> None:
    """Tune toward preferred answers (DPO), from a base model or an SFT output folder.

    With --gpus N (or --nodes) the run starts through `accelerate launch`, as for sft; --dry-run prints the exact
    command."""
    cluster = pop_cluster(flags)
    settings = check_training(DPOSettings, "dpo", config_file=config_file, set_pairs=set_pairs, flags=flags,
                              out_dir=out_dir, resume=resume, overwrite=overwrite,
                              files={"--data": data_file, "--eval": eval_file}, more=cluster_problems(cluster))
    from rung.trainers.dpo import dpo_job, train_dpo

    with output_guard(out_dir, cluster):
        if launches(cluster):
            launch_pipeline("dpo", settings, out_dir, job=dpo_job(settings, data_file, eval_file), cluster=cluster,
                            resume=resume)
        else:
            train_dpo(settings, data_file, out_dir, eval_path=eval_file, resume=resume)


# ---------------------------------------------------------------------------------------------- merge, chat


@click.command()
@click.argument("adapter_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for the merged model (new, empty, or an earlier merge; else --overwrite).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --out that rung did not create (files of "
                                                "the same name are replaced).")
@click.option("--trust-remote-code", is_flag=True, help="Allow the base model's own code to run.")
def merge(adapter_dir: Path, out_dir: Path, overwrite: bool, trust_remote_code: bool) -> None:
    """Merge a LoRA adapter into its base model so AutoModelForCausalLM loads it alone."""
    from rung.trainers.merge import merge_adapter

    merge_adapter(adapter_dir, out_dir, trust_remote_code=trust_remote_code, overwrite=overwrite)


def _generation_options(function):
    from rung.core.measure_flags import endpoint_limits  # the flags probe and gate have, declared once

    function = endpoint_limits(function, concurrency=False)
    function = click.option("--trust-remote-code", is_flag=True, help="Allow the model's own code to run.")(function)
    function = click.option("--temperature", type=Checked(float, minimum=0), default=0.0, show_default=True,
                            help="0 = greedy; above 0 samples.")(function)
    function = click.option("--max-new-tokens", type=Checked(int, minimum=1, maximum=MAX_NEW_TOKENS), default=128,
                            show_default=True,
                            help="Most tokens to generate per answer.")(function)
    function = click.option("--system", default=None, help="System prompt.")(function)
    function = click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, metavar="VAR",
                            help="For MODEL openai:NAME: the environment variable holding the API key.")(function)
    function = click.option("--api-base", default=None, metavar="URL",
                            help="For MODEL openai:NAME: the OpenAI-compatible endpoint's base URL "
                                 "(default: $OPENAI_BASE_URL).")(function)
    return function


def endpoint_reply(model: str, api_base: str | None, api_key_env: str, max_new_tokens: int, temperature: float,
                   **limits):
    """reply_to(messages) -> text, from an openai:NAME model behind an endpoint (core/endpoint.py); `limits`:
    concurrency, timeout_s, max_retries."""
    from rung.core.generation import open_chat_model

    client = open_chat_model(model, api_base=api_base, api_key_env=api_key_env, **limits)
    return lambda messages: client.chat([messages], max_new_tokens=max_new_tokens, temperature=temperature)[0]


@click.command()
@click.argument("model")
@click.option("--prompt", required=True, help="The user message (the chat template is applied).")
@click.option("--raw", is_flag=True, help="Feed --prompt as plain text, without the chat template.")
@_generation_options
def generate(model: str, prompt: str, raw: bool, system: str | None, max_new_tokens: int, temperature: float,
             trust_remote_code: bool, api_base: str | None, api_key_env: str, **limits) -> None:
    """Answer one prompt with a model folder, an adapter folder, builtin:tiny or openai:NAME at an endpoint."""
    from rung.core.endpoint import is_endpoint

    if is_endpoint(model):
        if raw:
            raise RungError("--raw feeds plain text to a local model; an endpoint takes chat messages")
        from rung.trainers.generate import as_messages

        reply_to = endpoint_reply(model, api_base, api_key_env, max_new_tokens, temperature, **limits)
        click.echo(reply_to(as_messages(prompt, system)))
        return
    check_model_argument(model)
    from rung.trainers.common import quiet_libraries
    from rung.core.models import load_for_inference
    from rung.trainers.generate import generate as run

    quiet_libraries()
    loaded, tokenizer = load_for_inference(model, trust_remote_code=trust_remote_code)
    click.echo(run(loaded, tokenizer, prompt, system=system, max_new_tokens=max_new_tokens,
                   temperature=temperature, raw=raw))


@click.command()
@click.argument("model")
@_generation_options
def chat(model: str, system: str | None, max_new_tokens: int, temperature: float, trust_remote_code: bool,
         api_base: str | None, api_key_env: str, **limits) -> None:
    """Chat interactively with a model folder, an adapter folder, builtin:tiny or openai:NAME at an endpoint."""
    from rung.core.endpoint import is_endpoint
    from rung.trainers.generate import chat_loop, generate as run

    if is_endpoint(model):
        reply_to = endpoint_reply(model, api_base, api_key_env, max_new_tokens, temperature, **limits)
    else:
        check_model_argument(model)
        from rung.core.models import load_for_inference
        from rung.trainers.common import quiet_libraries

        quiet_libraries()
        loaded, tokenizer = load_for_inference(model, trust_remote_code=trust_remote_code)

        def reply_to(messages: list[dict]) -> str:
            return run(loaded, tokenizer, messages, max_new_tokens=max_new_tokens, temperature=temperature)
    chat_loop(reply_to, system=system, read=lambda text: input(text), echo=click.echo)


def check_model_argument(model: str) -> None:
    """MODEL of generate/chat, checked before torch loads: a builtin, a model or adapter folder, a hub id."""
    problem = check_model_spec(model, Path.cwd(), "MODEL")[1]
    if problem:
        raise RungError(problem)


__all__ = ["data", "train", "merge", "chat", "generate"]
