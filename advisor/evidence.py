"""Evidence: scores measured on the user's own model and held-out rows (what `rung probe` writes), read as facts.

    version: 1
    metric: exact_match          # the task metric
    target: 0.9                  # the score that counts as good enough
    n: 40                        # held-out rows scored
    rungs:                       # any subset; score in [0, 1], ci optional
      zero_shot: {score: 0.31, ci: [0.18, 0.45]}
      few_shot:  {score: 0.62, ci: [0.47, 0.76]}
      rag:       {score: 0.88, ci: [0.77, 0.95]}
      lora_short: {score: 0.74}

What the numbers decide lives in advisor/rules.yaml (the `evidence` stage and the `evidence-rag` route rule,
with their thresholds); this module only checks the file and turns it into facts (evidence_facts).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rung.core.errors import RungError, did_you_mean
from rung.core.fileio import read_yaml, short

EVIDENCE_VERSION = 1
RUNGS = {"zero_shot": "zero-shot", "few_shot": "few-shot", "rag": "RAG", "lora_short": "a short LoRA run"}
TOP_KEYS = ("version", "metric", "target", "n", "rungs", "model", "created", "notes")
RUNG_KEYS = ("score", "ci", "n", "cost_usd", "seconds_per_row", "unparsed_verdicts")


def _fraction(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0.0 <= value <= 1.0)


def described(value: Any) -> str:
    """A value from a file rung refuses, without echoing its text: numbers as they are, others by kind.
    (A wrong path given as --evidence, a symlink to a system file, must not print that file.)"""
    if value is None or isinstance(value, (bool, int, float)):
        return short(value)
    if isinstance(value, str):
        return f"a string of {len(value):,} characters"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value):,} items"
    if isinstance(value, dict):
        return f"a mapping of {len(value):,} keys"
    return f"a {type(value).__name__}"


def _unknown_keys(mapping: dict, known: tuple[str, ...], at: str) -> list[str]:
    """Unknown keys by position (the 3rd key), never by text; a close typo gets its did-you-mean."""
    names = list(mapping)
    unknown = [(i, k) for i, k in enumerate(names, 1) if k not in known]
    if len(unknown) > 3 and len(unknown) * 2 > len(names):
        return [f"{at}: {len(unknown)} of its {len(names)} keys are not evidence keys ({', '.join(known)}): is "
                "this an evidence file (what `rung probe` writes)?"]
    return [f"{at}: unknown key (key {i} of {len(names)}){did_you_mean(str(k), known)}" for i, k in unknown]


def validate_evidence(raw: Any, where: str) -> list[str]:
    """Every problem in an evidence mapping, each naming its key; the file's own text is never echoed."""
    if not isinstance(raw, dict):
        return [f"{where}: expected a mapping with version, metric, target, n and rungs, got {described(raw)}: is "
                "this an evidence file (what `rung probe` writes)?"]
    problems = _unknown_keys(raw, TOP_KEYS, where)
    if problems and "is this an evidence file" in problems[0]:
        return problems
    if raw.get("version") != EVIDENCE_VERSION:
        problems.append(f"{where}: version must be {EVIDENCE_VERSION}, got {described(raw.get('version'))}")
    if not isinstance(raw.get("metric"), str) or not raw.get("metric"):
        problems.append(f"{where}: metric: expected the metric's name (e.g. exact_match), got "
                        f"{described(raw.get('metric'))}")
    if not _fraction(raw.get("target")) or raw.get("target") == 0:
        problems.append(f"{where}: target: expected a score in (0, 1], got {described(raw.get('target'))}")
    n = raw.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        problems.append(f"{where}: n: expected the number of held-out rows scored (>= 1), got {described(n)}")
    rungs = raw.get("rungs")
    if not isinstance(rungs, dict) or not rungs:
        problems.append(f"{where}: rungs: expected a mapping of rung -> {{score, ci}} with at least one of "
                        f"{', '.join(RUNGS)}")
        return problems
    for number, (name, entry) in enumerate(rungs.items(), 1):
        if name not in RUNGS:
            problems.append(f"{where}: rungs: unknown rung (entry {number} of {len(rungs)})"
                            f"{did_you_mean(str(name), RUNGS)}; rungs: {', '.join(RUNGS)}")
            continue
        at = f"{where}: rungs.{name}"
        if not isinstance(entry, dict):
            problems.append(f"{at}: expected {{score: 0.62, ci: [0.47, 0.76]}}, got {described(entry)}")
            continue
        problems += _unknown_keys(entry, RUNG_KEYS, at)
        score = entry.get("score")
        if not _fraction(score):
            problems.append(f"{at}.score: expected a number in [0, 1], got {described(score)}")
        ci = entry.get("ci")
        if ci is not None:
            if not (isinstance(ci, list) and len(ci) == 2 and all(_fraction(c) for c in ci) and ci[0] <= ci[1]):
                problems.append(f"{at}.ci: expected [low, high] in [0, 1] with low <= high, got {described(ci)}")
            elif _fraction(score) and not ci[0] <= score <= ci[1]:
                problems.append(f"{at}.ci: {ci} does not contain the score {score}")
    return problems


def load_evidence(path: str | Path) -> dict[str, Any]:
    """An evidence file, checked: every problem at once as one RungError (exit 2)."""
    raw = read_yaml(path, what="evidence file")
    problems = validate_evidence(raw, str(path))
    if problems:
        raise RungError(problems)
    return raw


def score_text(name: str, entry: dict[str, Any]) -> str:
    ci = entry.get("ci")
    return f"{RUNGS[name]} scored {entry['score']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def evidence_facts(evidence: dict[str, Any] | None) -> dict[str, Any]:
    """Facts for the rules: the best prompt (the higher of zero-shot and few-shot), RAG, the target, and the
    sentence that cites them. Nothing when there is no evidence, so no evidence rule can fire."""
    if not evidence:
        return {}
    rungs, target, n = evidence["rungs"], float(evidence["target"]), int(evidence["n"])
    facts: dict[str, Any] = {"evidence_target": target, "evidence_n": n, "evidence_metric": evidence["metric"]}
    prompts = [name for name in ("few_shot", "zero_shot") if name in rungs]
    cited = []
    if prompts:
        best = max(prompts, key=lambda name: rungs[name]["score"])  # few-shot wins a tie: listed first
        facts.update(evidence_best_prompt=float(rungs[best]["score"]),
                     evidence_best_prompt_meets_target=rungs[best]["score"] >= target)
        cited.append(score_text(best, rungs[best]))
    if "rag" in rungs:
        facts.update(evidence_rag=float(rungs["rag"]["score"]), evidence_rag_meets_target=rungs["rag"]["score"] >= target)
        cited.append(score_text("rag", rungs["rag"]))
    if "lora_short" in rungs:
        cited.append(score_text("lora_short", rungs["lora_short"]))
    facts["evidence_text"] = (", ".join(cited) + f" on {n} held-out rows ({evidence['metric']}); "
                              f"target {target:.2f}")
    return facts


def summary(evidence: dict[str, Any], derived: str | None, replaced: str | None) -> dict[str, Any]:
    """The `evidence` object of `rung advise --json` and plan.yaml: what was measured and what it decided."""
    return {"metric": evidence["metric"], "target": evidence["target"], "n": evidence["n"],
            "scores": {name: {k: entry[k] for k in ("score", "ci") if k in entry}
                       for name, entry in evidence["rungs"].items()},
            "prompting_result": derived, "replaced_answer": replaced}
