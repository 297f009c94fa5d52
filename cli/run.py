"""`rung run PLAN` executes a plan; `rung demo` runs the SQL-assistant journey end to end (what `make demo` calls).

Heavy libraries load inside the engines, so `rung run --help` and `--dry-run` stay fast.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click

from rung.core.errors import RungError


@click.command("run")
@click.argument("plan", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the plan and print the resolved settings; run and write nothing.")
@click.option("--resume", is_flag=True,
              help="Skip the steps an earlier run finished and continue the interrupted one from its last checkpoint.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run root: where resolved_plan.yaml, report.md and one folder per step go (default: the plan's folder).")
@click.option("--gpus", type=int, default=0, show_default=True,
              help="GPUs to use; more than 1 launches multi-GPU training through accelerate. "
                   "Fails before any work when torch sees fewer CUDA GPUs (there is no multi-process CPU mode).")
@click.option("--nodes", type=int, default=1, show_default=True,
              help="Machines in a multi-node run: start the same command on each, with its own --node-rank "
                   "(SFT, DPO and continued pretraining steps launch across them through accelerate).")
@click.option("--node-rank", type=int, default=0, show_default=True, help="This machine's rank, 0 on the main node.")
@click.option("--main-address", default=None, help="Address of the rank-0 machine (needed with --nodes > 1).")
@click.option("--main-port", type=int, default=None, help="Rendezvous port on the rank-0 machine (default: accelerate's).")
@click.option("--set", "sets", multiple=True, metavar="STEP.KEY=VALUE",
              help="Override one step setting, e.g. --set sft.max_steps=20 (repeatable; wins over plan.yaml).")
def run(plan: Path, dry_run: bool, resume: bool, out: Path | None, gpus: int, nodes: int, node_rank: int,
        main_address: str | None, main_port: int | None, sets: tuple[str, ...]) -> None:
    """Run a plan's steps in order and write report.md.

    Every problem in the plan (unknown keys, missing data files, unknown engines or models, a GPU count this
    machine cannot give) is listed before any work starts, one line each, exit 2.
    """
    from rung.run.execute import execute
    from rung.run.prepare import prepare, resolved_summary_text
    from rung.run.state import RESOLVED_FILE

    prepared = prepare(plan, out=out, gpus=gpus, sets=sets, nodes=nodes, node_rank=node_rank,
                       main_address=main_address, main_port=main_port)
    click.echo(f"Running {plan} with resolved settings:" if not dry_run else f"Dry run of {plan}; resolved settings:")
    click.echo(resolved_summary_text(prepared).rstrip())
    click.echo(f"(all of it, with the estimate: {prepared.run_root / RESOLVED_FILE})" if not dry_run else "")
    if dry_run:
        for number, step in enumerate(prepared.steps, start=1):
            click.echo(f"[{number}/{len(prepared.steps)}] {step['id']} ({step['engine']}) -> "
                       f"{prepared.run_root / step['id']}")
        click.echo(f"Plan OK. Nothing was run; `rung run {plan}` writes {prepared.run_root / RESOLVED_FILE} "
                   "and report.md.")
        return
    started = time.perf_counter()
    try:
        report = execute(prepared, resume=resume, echo=click.echo)
    except KeyboardInterrupt:
        click.echo(f"\nInterrupted. Continue with: rung run {plan} --resume"
                   + (f" --out {out}" if out else ""), err=True)
        sys.exit(130)
    click.echo(f"Done in {time.perf_counter() - started:.1f} s. Report: {report}")


def _examples_root() -> Path:
    """examples/ beside the package (a source checkout; `make demo` runs from one)."""
    return Path(__file__).resolve().parent.parent / "examples"


# Stage 2 settings for the demo's 1.4M-parameter toy: LoRA at 2e-4 (the plan's CPU default) barely moves a
# model this small in a few minutes; full fine-tuning at 3e-3 for 6 epochs (180 steps of 8) learns the format.
DEMO_SETS = ("sft.adapter=full", "sft.learning_rate=3e-3", "sft.num_train_epochs=6", "sft.eval_steps=60",
             "sft.save_steps=60")


def _show_samples(path: Path, limit: int = 3) -> None:
    """Print the first few before/after pairs of an SFT samples.md."""
    if not path.exists():
        return
    shown = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            shown += 1
            if shown > limit:
                break
            click.echo("\n" + line[3:])
        elif line.startswith("- ") and shown:
            click.echo("  " + line[2:])


def _continue(model_dir: Path, prompt: str, tokens: int = 24) -> str:
    """A base model's continuation of raw text: what stage 1 taught it (no chat template, no format)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True)
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                             no_repeat_ngram_size=3, pad_token_id=tokenizer.pad_token_id)
    return " " + " ".join(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).split())


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Folder for the demo's copy of the scenario, its plan and its run.")
@click.option("--fresh", is_flag=True, help="Delete an earlier demo run in --out first instead of resuming it.")
def demo(out: Path, fresh: bool) -> None:
    """Run the whole journey offline: plan the SQL-assistant scenario, fine-tune, and print the report path.

    Stage 1 pretrains builtin:tiny briefly on Python's own help text (cached: builtin:tiny-base), a base model
    that writes text but ignores the format. Stage 2 is the plan: SFT on the SQL examples. The report shows
    the base model's answers before and the fine-tuned model's after.
    """
    from rung.cli.main import cli

    scenario = _examples_root() / "sql_assistant"
    if not (scenario / "answers.yaml").exists():
        raise RungError(f"{scenario}/answers.yaml not found: `rung demo` runs from a source checkout of rung")
    if fresh and out.exists():
        shutil.rmtree(out)
    work = out / "sql_assistant"
    (work / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy2(scenario / "answers.yaml", work / "answers.yaml")
    for name in ("train.jsonl", "eval.jsonl"):
        shutil.copy2(scenario / "data" / name, work / "data" / name)
    started = time.perf_counter()
    click.echo(f"== rung demo: the terse SQL assistant, from answers to a fine-tuned model, in {work} ==")

    click.echo("\n-- stage 1: a base model. builtin:tiny (random weights) pretrained briefly on Python's help text "
               "(once, then cached) --")
    from rung.core.models import resolve_model

    stage1 = time.perf_counter()
    base_dir = resolve_model("builtin:tiny-base")
    click.echo(f"builtin:tiny-base ready in {time.perf_counter() - stage1:.0f} s: {base_dir}")
    prompt = "The for statement is used to"
    click.echo(f'It continues raw text (greedy, no repeated 3-grams): "{prompt}{_continue(base_dir, prompt)}"')

    plan_args = ["plan", "--answers", str(work / "answers.yaml"), "--out", str(work), "--base-model", "builtin:tiny-base",
                 "--data", f"train={work / 'data' / 'train.jsonl'}", "--data", f"eval={work / 'data' / 'eval.jsonl'}"]
    click.echo("\n-- the plan --\n$ rung " + " ".join(plan_args))
    cli.main(args=plan_args, prog_name="rung", standalone_mode=False)

    plan_path = work / "plan.yaml"
    click.echo("\n-- stage 2: run the plan (SFT) --\n$ rung run " + str(plan_path) + " --resume "
               + " ".join(f"--set {s}" for s in DEMO_SETS))
    click.get_current_context().invoke(run, plan=plan_path, dry_run=False, resume=True, out=None, gpus=0,
                                       sets=DEMO_SETS)
    click.echo("\n-- before (base model) and after (fine-tuned), first held-out questions --")
    _show_samples(work / "sft" / "samples.md")
    gate_md = work / "gate" / "gate.md"
    if gate_md.exists():  # the plan's last step: does the fine-tuned model beat the base model with its prompt?
        lines = [line for line in gate_md.read_text(encoding="utf-8").splitlines() if line.strip()]
        click.echo("\n-- the ship gate --\n" + lines[0].lstrip("# ").replace("**", "") + ": " + lines[1])
    click.echo(f"\nDemo finished in {time.perf_counter() - started:.0f} s.")
    click.echo(f"Report: {work / 'report.md'}")
