"""`rung run PLAN` executes a plan (`rung demo`, in cli/demo.py, runs one end to end).

Heavy libraries load inside the engines, so `rung run --help` and `--dry-run` stay fast.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from rung.cli.options import settings_from_flags, settings_options
from rung.core.settings import ClusterSettings


@click.command("run")
@click.argument("plan", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the plan and print the resolved settings; run and write nothing.")
@click.option("--resume", is_flag=True,
              help="Skip the steps an earlier run finished and continue the interrupted one from its last checkpoint.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run root: where resolved_plan.yaml, report.md and one folder per step go (default: the plan's folder).")
@settings_options(ClusterSettings, values=True)
@click.option("--set", "sets", multiple=True, metavar="STEP.KEY=VALUE",
              help="Override one step setting, e.g. --set sft.max_steps=20 (repeatable; wins over plan.yaml).")
def run(plan: Path, dry_run: bool, resume: bool, out: Path | None, sets: tuple[str, ...], **flags: Any) -> None:
    """Run a plan's steps in order and write report.md.

    Every problem in the plan (unknown keys, missing data files, unknown engines or models, a GPU count this
    machine cannot give) is listed before any work starts, one line each, exit 2.
    """
    from rung.run.execute import execute
    from rung.run.prepare import prepare, resolved_summary_text
    from rung.run.state import RESOLVED_FILE

    prepared = prepare(plan, out=out, sets=sets, cluster=settings_from_flags(ClusterSettings, flags))
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
