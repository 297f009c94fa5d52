"""An LLM judge as a task metric: a model (local or openai:NAME, through core/generation.py) grades each answer
against the reference with a rubric and replies PASS or FAIL. Used by `rung probe` and `rung gate` with
`--metric judge --judge-model SPEC [--rubric TEXT]`; the scores get the same bootstrap CIs as every metric.

A judge is itself a model with biases: prefer a deterministic metric when one fits, give the rubric in words a
person could apply, and read the judge's verdicts (judge.jsonl) before trusting the number.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_text
from rung.engines import metrics

JUDGE = "judge"
DEFAULT_RUBRIC = "The answer says what the reference says, in the form the task asks for."
PROMPT = ("You grade one answer against a reference answer.\nRubric: {rubric}\n\nRequest:\n{request}\n\n"
          "Reference answer:\n{reference}\n\nAnswer to grade:\n{answer}\n\n"
          "Reply with one word: PASS if the answer meets the rubric, FAIL if it does not.")
# A verdict is the LAST standalone PASS or FAIL the reply names (a judge reasons first, then concludes), or
# the "verdict" of a JSON reply. Upper-case tokens win over lower-case ones ("it may pass ... FAIL"); a token
# right after a negation ("NOT PASS", "doesn't pass") is a FAIL, and "PASS or FAIL" / "PASS/FAIL" (the prompt
# echoed back) is no verdict at all.
VERDICT = re.compile(r"(?<![A-Za-z0-9_])(PASS|FAIL)(?![A-Za-z0-9_])", re.IGNORECASE)
ECHOED_CHOICE = re.compile(r"\b(PASS|FAIL)\b\s*(?:/|\bor\b|\|)\s*\b(PASS|FAIL)\b", re.IGNORECASE)
NEGATION = re.compile(r"(?:\bnot|n't|\bnever|\bno)\W+(?:an?\W+|the\W+)?$", re.IGNORECASE)
JUDGE_MAX_NEW_TOKENS = 24  # room for a short reason before the verdict, or {"verdict": "PASS"}
UNPARSED_WARN_SHARE = 0.1


def metric_problems(metric: str | None, judge_model: str | None) -> list[str]:
    """Problems with --metric (any of engines/metrics.py's, or judge with a --judge-model)."""
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
               concurrency: int = 4, timeout_s: float = 30.0, max_retries: int = 2, log: Path | None = None,
               **options):
    """outputs scored against the rows' references with `metric` (the judge, or engines/metrics.py with
    `options`: pattern= for regex, schema= for json_schema)."""
    if metric == JUDGE:
        return judge_score(outputs, rows, judge_model=judge_model, rubric=rubric, api_base=api_base,
                           api_key_env=api_key_env, concurrency=concurrency, timeout_s=timeout_s,
                           max_retries=max_retries, log=log)
    return metrics.score(outputs, [r["output"] for r in rows], metric, rows=rows, **options)


def _structured(text: str) -> float | None:
    """1.0/0.0 from a JSON reply {"verdict": "PASS"|"FAIL"} (or {"pass": true}), None otherwise."""
    import json as json_module

    body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    if not body.startswith("{"):
        return None
    try:
        value = json_module.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    word = value.get("verdict")
    if isinstance(word, str) and word.strip().upper() in ("PASS", "FAIL"):
        return float(word.strip().upper() == "PASS")
    if isinstance(value.get("pass"), bool):
        return float(value["pass"])
    return None


def verdict(reply: str) -> float | None:
    """1.0 for PASS, 0.0 for FAIL, None when the reply gives no verdict (see VERDICT above)."""
    text = reply if isinstance(reply, str) else ""
    structured = _structured(text)
    if structured is not None:
        return structured
    text = ECHOED_CHOICE.sub(" ", text)
    tokens = list(VERDICT.finditer(text))
    upper = [t for t in tokens if t.group(1).isupper()]
    if not tokens:
        return None
    last = (upper or tokens)[-1]
    word = last.group(1).upper()
    if NEGATION.search(text[max(0, last.start() - 16):last.start()]):
        return 0.0 if word == "PASS" else None  # "not PASS" fails; "not FAIL" is no clear verdict
    return float(word == "PASS")


@dataclass(frozen=True)
class JudgeScore(metrics.Score):
    unparsed: int = 0  # replies that gave no verdict (counted as FAIL)

    def warning(self) -> str | None:
        """A line to print when too many replies gave no verdict, else None."""
        if not self.unparsed or self.unparsed / max(self.n, 1) < UNPARSED_WARN_SHARE:
            return None
        return (f"warning: the judge gave no PASS/FAIL verdict on {self.unparsed} of {self.n} answers "
                f"({self.unparsed / max(self.n, 1):.0%}); they count as FAIL. Read its replies in the judge log "
                "and sharpen --rubric or pick a stronger --judge-model")


def judge_score(outputs: list[str], rows: list[dict[str, str]], *, judge_model: str | None, rubric: str | None,
                api_base: str | None = None, api_key_env: str | None = None, concurrency: int = 4,
                timeout_s: float = 30.0, max_retries: int = 2, log: Path | None = None) -> JudgeScore:
    """A JudgeScore from the judge's verdicts; a reply that names neither PASS nor FAIL counts as FAIL, is
    marked null in the log (judge_*.jsonl beside the other outputs) and counted in `unparsed`."""
    from rung.core.generation import open_chat_model

    if not judge_model:
        raise RungError("--metric judge needs --judge-model SPEC (a local model or openai:NAME)")
    model = open_chat_model(judge_model, api_base=api_base, api_key_env=api_key_env, concurrency=concurrency,
                            timeout_s=timeout_s, max_retries=max_retries)
    prompts = [[{"role": "user", "content": PROMPT.format(rubric=rubric or DEFAULT_RUBRIC, request=row["input"],
                                                          reference=row["output"], answer=output)}]
               for output, row in zip(outputs, rows)]
    replies = model.chat(prompts, max_new_tokens=JUDGE_MAX_NEW_TOKENS)
    verdicts = [verdict(reply) for reply in replies]
    per_row = [v if v is not None else 0.0 for v in verdicts]
    if log is not None:
        atomic_write_text(log, "".join(json.dumps({"answer": o, "reply": r, "verdict": v}, ensure_ascii=False) + "\n"
                                       for o, r, v in zip(outputs, replies, verdicts)))
    low, high = metrics.bootstrap_ci(per_row)
    return JudgeScore(metric=JUDGE, n=len(per_row), mean=sum(per_row) / len(per_row), ci_low=low, ci_high=high,
                      per_row=per_row, unparsed=sum(v is None for v in verdicts))
