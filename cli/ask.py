"""`rung ask`: the questionnaire, and, when the person has held-out rows, a probe before the advice.

The questions live in advisor/questionnaire.py; measuring needs models, which the advisor never loads, so the
offer to probe is made here and handed to it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

# goals whose advice turns on how well a prompt does (the questionnaire asks prompting_result for these)
MEASURABLE_GOALS = ("style", "schema", "domain_task", "shorten_prompt", "preferences")


def offer_probe(out: str, measured: list[Path]):
    def measure(answers: dict[str, Any]) -> dict[str, Any] | None:
        if answers["goal"] not in MEASURABLE_GOALS:
            return None
        try:
            return offer(answers)
        except click.Abort:
            if sys.stdin.isatty():
                raise
            click.echo("\n(input ended: no probe)")
            return None

    def offer(answers: dict[str, Any]) -> dict[str, Any] | None:
        click.echo("\nMeasured beats guessed: with held-out examples, rung can score your prompt on them now.")
        path = click.prompt("Held-out examples to measure on (JSONL of {input, output}; empty = skip)",
                            default="", show_default=False, prompt_suffix=": ").strip()
        if not path:
            return None
        eval_path = Path(path).expanduser()
        while not eval_path.is_file():
            path = click.prompt(f"{eval_path} is not a file; a path (empty = skip)", default="", show_default=False,
                                prompt_suffix=": ").strip()
            if not path:
                return None
            eval_path = Path(path).expanduser()
        model = click.prompt("Model to measure (hub id, folder, builtin:tiny, or openai:NAME with OPENAI_BASE_URL set)",
                             default=answers.get("base_model") or "builtin:tiny", prompt_suffix=": ").strip()
        examples = click.prompt("Labelled examples for a few-shot prompt (empty = zero-shot only)", default="",
                                show_default=False, prompt_suffix=": ").strip()
        from rung.core.settings import ProbeSettings
        from rung.engines.probe import ProbeInputs, probe

        out_dir = Path(out).expanduser().resolve().parent / "probe"
        inputs = ProbeInputs(eval_path=eval_path, out_dir=out_dir, goal=answers["goal"], answers_path=Path(out),
                             examples_path=Path(examples).expanduser() if examples else None)
        evidence = probe(ProbeSettings(model=model), inputs, echo=click.echo)
        click.echo(f"Evidence saved to {out_dir / 'evidence.yaml'} (rung advise|plan --evidence reads it).")
        measured.append(out_dir / "evidence.yaml")
        return evidence

    return measure


@click.command()
@click.option("--out", "out", default="answers.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="Where to save the answers file.")
@click.option("--no-probe", is_flag=True, help="Do not offer to measure a prompt on held-out examples.")
def ask(out: str, no_probe: bool) -> None:
    """Answer a few questions, one at a time, and get a recommendation; saves the answers file."""
    from rung.advisor.questionnaire import run_questionnaire

    measured: list[Path] = []
    run_questionnaire(out, measure=None if no_probe else offer_probe(out, measured))
    if measured:
        evidence = measured[-1]
        shown = evidence.relative_to(Path.cwd()) if evidence.is_relative_to(Path.cwd()) else evidence
        click.echo(f"With the evidence: rung plan --answers {out} --evidence {shown} --out plan/")
