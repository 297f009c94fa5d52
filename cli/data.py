"""`rung data check`: every problem of a fine-tuning data file, its token statistics and its split.

Only click and pure-Python rung modules load here; the tokenizer loads inside the command body."""

from __future__ import annotations

from pathlib import Path

import click

from rung.cli.options import field_type
from rung.core.errors import RungError
from rung.core.fileio import MAX_TEXT_BYTES
from rung.core.inputs import check_model_spec, input_problem
from rung.core.settings import SFTSettings

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



__all__ = ["data"]
