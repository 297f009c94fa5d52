"""An LLM judge as a task metric: a model (local or openai:NAME, through core/generation.py) grades each answer
against the reference with a rubric and replies PASS or FAIL. Used by `rung probe` and `rung gate` with
`--metric judge --judge-model SPEC [--rubric TEXT]`; the scores get the same bootstrap CIs as every metric.

A judge is itself a model with biases: prefer a deterministic metric when one fits, give the rubric in words a
person could apply, and read the judge's verdicts (judge.jsonl) before trusting the number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_text

JUDGE = "judge"
DEFAULT_RUBRIC = "The answer says what the reference says, in the form the task asks for."
PROMPT = ("You grade one answer against a reference answer.\nRubric: {rubric}\n\nRequest:\n{request}\n\n"
          "Reference answer:\n{reference}\n\nAnswer to grade:\n{answer}\n\n"
          "Reply with one word: PASS if the answer meets the rubric, FAIL if it does not.")
VERDICT = re.compile(r"\b(PASS|FAIL)\b", re.IGNORECASE)


def metric_problems(metric: str | None, judge_model: str | None) -> list[str]:
    """Problems with --metric (any of engines/metrics.py's, or judge with a --judge-model)."""
    from rung.engines import metrics

    if metric == JUDGE:
        return [] if judge_model else ["--metric judge needs --judge-model SPEC (a local model or openai:NAME)"]
    if metric:
        try:
            metrics.check_metric(metric)
        except RungError as error:
            return [str(error.message)]
    return []


def score_rows(outputs: list[str], rows: list[dict[str, str]], metric: str, *, judge_model: str | None = None,
               rubric: str | None = None, api_base: str | None = None, api_key_env: str | None = None,
               log: Path | None = None, **options):
    """outputs scored against the rows' references with `metric` (the judge, or engines/metrics.py)."""
    from rung.engines import metrics

    if metric == JUDGE:
        return judge_score(outputs, rows, judge_model=judge_model, rubric=rubric, api_base=api_base,
                           api_key_env=api_key_env, log=log)
    return metrics.score(outputs, [r["output"] for r in rows], metric, rows=rows, **options)


def verdict(reply: str) -> float | None:
    """1.0 for PASS, 0.0 for FAIL (the first one the reply names), None when it names neither."""
    found = VERDICT.search(reply or "")
    return None if found is None else float(found.group(1).upper() == "PASS")


def judge_score(outputs: list[str], rows: list[dict[str, str]], *, judge_model: str | None, rubric: str | None,
                api_base: str | None = None, api_key_env: str | None = None, concurrency: int = 4,
                log: Path | None = None):
    """A metrics.Score from the judge's verdicts; a reply that names neither PASS nor FAIL counts as FAIL and is
    counted in the log (judge.jsonl beside the other outputs)."""
    from rung.core.generation import open_chat_model
    from rung.engines import metrics

    if not judge_model:
        raise RungError("--metric judge needs --judge-model SPEC (a local model or openai:NAME)")
    model = open_chat_model(judge_model, api_base=api_base, api_key_env=api_key_env, concurrency=concurrency)
    prompts = [[{"role": "user", "content": PROMPT.format(rubric=rubric or DEFAULT_RUBRIC, request=row["input"],
                                                          reference=row["output"], answer=output)}]
               for output, row in zip(outputs, rows)]
    replies = model.chat(prompts, max_new_tokens=8)
    verdicts = [verdict(reply) for reply in replies]
    per_row = [v if v is not None else 0.0 for v in verdicts]
    if log is not None:
        atomic_write_text(log, "".join(json.dumps({"answer": o, "reply": r, "verdict": v}, ensure_ascii=False) + "\n"
                                       for o, r, v in zip(outputs, replies, verdicts)))
    low, high = metrics.bootstrap_ci(per_row)
    return metrics.Score(metric=JUDGE, n=len(per_row), mean=sum(per_row) / len(per_row), ci_low=low, ci_high=high,
                         per_row=per_row)

