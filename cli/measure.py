"""`rung probe` and `rung gate`: measure the cheap rungs on your model and rows; check a trained model beats them.

Only click and pure-Python modules load here; models load inside the command bodies.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rung.cli.options import settings_and_problems, settings_options
from rung.core.settings import GateSettings, ProbeSettings


@click.command()
@click.option("--answers", "answers_path", required=True, type=click.Path(dir_okay=False),
              help="The answers file: its goal picks the default metric.")
@click.option("--eval", "eval_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Held-out rows: {input, output}, prompt/completion, question/answer or chat messages, JSONL.")
@click.option("--examples", "examples_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Labelled examples (same shapes) for the few-shot prompt and the short LoRA run.")
@click.option("--docs", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A folder of documents: also measure RAG (the rag engine's index; answers cite chunks).")
@settings_options(ProbeSettings, values=True, required=("model",), later=("target",))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for evidence.yaml, probe.md, probe.png and the answers (a rerun resumes).")
@click.option("--resume", is_flag=True, help="Use the answers in a non-empty --out folder the probe did not mark as "
                                             "its own (probe.json).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --out folder the probe did not mark as its "
                                                "own, ignoring the answers there.")
def probe(answers_path, eval_path, examples_path, docs, out_dir, resume, overwrite, **flags) -> None:
    """Measure zero-shot, few-shot, RAG and a short LoRA on your rows; write the evidence for `rung advise`."""
    from rung.advisor.answers import load_answers
    from rung.engines.probe import ProbeInputs, probe as run_probe

    settings, problems = settings_and_problems(ProbeSettings, flags)
    answers = load_answers(answers_path)
    inputs = ProbeInputs(eval_path=eval_path, out_dir=out_dir, goal=answers["goal"], answers_path=Path(answers_path),
                         examples_path=examples_path, docs=docs, resume=resume, overwrite=overwrite)
    evidence = run_probe(settings, inputs, echo=click.echo, problems=problems)
    for name, entry in evidence["rungs"].items():
        click.echo(f"{name:<10} {entry['score']:.3f}  95% CI [{entry['ci'][0]:.3f}, {entry['ci'][1]:.3f}]")
    click.echo(f"Wrote {out_dir / 'evidence.yaml'} and {out_dir / 'probe.md'}")
    click.echo(f"Next: rung advise --answers {answers_path} --evidence {out_dir / 'evidence.yaml'}")


@click.command()
@click.option("--eval", "eval_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Held-out rows both are scored on (the same rows: a paired comparison).")
@click.option("--examples", "examples_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Labelled examples for the baseline's few-shot prompt (its best prompt).")
@click.option("--goal", default="", help="The answers' goal (style, schema, domain_task, ...): picks the default metric.")
@click.option("--general-text", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Text for the forgetting check (default: held-out Python help topics).")
@settings_options(GateSettings, values=True, required=("baseline", "candidate"), later=("target",))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for gate.json, gate.md and both models' answers.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --out folder that holds no gate.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def gate(eval_path, examples_path, goal, general_text, out_dir, overwrite, as_json, **flags) -> None:
    """Ship only a model that beats the cheaper rung: exit 0 SHIP, 1 DON'T SHIP, 2 bad input."""
    from rung.engines.gate import SHIP, GateInputs, gate as run_gate, markdown, next_move

    settings, problems = settings_and_problems(GateSettings, flags)
    inputs = GateInputs(eval_path=eval_path, out_dir=out_dir, goal=goal, examples_path=examples_path,
                        general_text=general_text, overwrite=overwrite)
    result = run_gate(settings, inputs, echo=(lambda line: None) if as_json else click.echo, problems=problems)
    if as_json:
        import json

        click.echo(json.dumps(result, indent=2, allow_nan=False))
    else:
        click.echo(markdown(result).rstrip() + next_move(result, settings.baseline))
    sys.exit(0 if result["verdict"] == SHIP else 1)
