"""`make mutate`: mutation testing (mutmut 3.8.1) of the code that decides, against the fast tests.

mutmut 3 copies the sources it mutates into ./mutants/ and runs pytest there, with ./mutants first on sys.path.
This repository's root *is* the package `rung` (pyproject's package-dir maps "rung" to "."), and the editable
install points at the real tree, so mutmut cannot run in the repository itself: `import rung.x` would find the
original. So this script stages a tree in build/mutation/ that has the usual shape,

    build/mutation/rung/...      the package (every subpackage: mutated files and the rest)
    build/mutation/tests/...     the test suite, as it is
    build/mutation/examples/...  data the tests read (copied into mutants/ by also_copy)
    build/mutation/pyproject.toml  this repository's, plus the [tool.mutmut] section written below

runs `mutmut run` there (mutmut puts build/mutation/mutants/ first on sys.path, so `rung` is the mutated copy;
its forced-fail check, a run in which every trampoline raises, fails the whole run if the tests ever import the
original instead), and reads the results back.

Only some functions are mutated (TARGETS: a file's listed functions, or all of them): mutmut names each mutant
`module.x_function__mutmut_N` (methods `module.xǁClassǁmethod__mutmut_N`), and `mutmut run PATTERN...` runs only
the matching ones. The numbers N shift whenever the code changes, so survivors are matched against
tests/mutation/survivors.yaml by (module, function, the mutated line before -> after as mutmut shows it). Exit 1
when a mutant survives that the file does not explain; explanations that matched nothing are listed as stale.

    python tests/mutation/run.py                 # the whole run (make mutate)
    python tests/mutation/run.py --reuse         # read the results of the last run again (no mutmut run)
    python tests/mutation/run.py --only rung.engines.gate   # one module's mutants (a quick loop while fixing)
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / "build" / "mutation"
SURVIVORS = Path(__file__).resolve().parent / "survivors.yaml"
PACKAGES = ["advisor", "cli", "core", "engines", "rag", "run", "trainers"]

# What is mutated: file (relative to the package root) -> the functions whose mutants run (None: every function
# in the file; a method is "Class.method"). Decorated functions are never mutated by mutmut 3 (lru_cache'd
# loaders here), nor is code outside functions (constants, tables).
TARGETS: dict[str, list[str] | None] = {
    # the advisor's rule evaluator: a test against a fact, a rule's `when`, a stage's fired rules, the what-if
    # walk of the route rules, the derived facts, and the decision's stages (evidence, route, adapter, budget)
    "advisor/rules.py": ["test_holds", "matches", "evaluate", "could_pick", "could_turn_on",
                         "_route_rules_that_may_fire", "answer_facts", "advise", "_evidence_stage", "_route_stage",
                         "_budget_stage"],
    # threshold references in rules ({ref: name}) resolved before a test is applied
    "advisor/rulebook.py": ["is_reference", "resolve"],
    # the evidence stage's input: a probe's evidence.yaml turned into facts for the rules, and its summary
    # (validate_evidence, the file's checks and their messages, is not mutated)
    "advisor/evidence.py": ["_fraction", "evidence_facts", "summary"],
    # scores, the metric choice, bootstrap CIs, the paired test (not the option and name messages)
    "engines/metrics.py": ["normalize", "parse_json", "same_json", "exact_match", "normalized_match", "token_f1",
                           "json_valid", "json_schema", "json_match", "chrf", "rouge_l", "regex", "_looks_like_json",
                           "choose_metric", "bootstrap_ci", "score", "mcnemar_exact", "paired_difference"],
    # the gate's verdict (decide: run_gate itself loads models) and what a DON'T SHIP asks for next
    "engines/gate.py": ["decide", "next_move", "replay_step"],
    # the probe's prompts: the system prompt, the few-shot template, the per-row conversations, the cheap rung's
    "engines/prompts.py": ["wants_json", "build_system_prompt", "build_prompt", "to_chat", "row_chats",
                           "best_instructions", "prompted"],
    "engines/probe.py": ["prompt_plans"],
    # the estimator's arithmetic (not its text)
    "advisor/estimate_math.py": ["params_from_name", "params_from_config", "model_type_ties", "lora_params",
                                 "method_adapter", "flops_terms", "flops_per_token", "memory_breakdown",
                                 "memory_gb", "parse_count"],
    "advisor/estimator.py": ["gpu_for_memory", "cheapest_gpu_that_fits", "largest_fitting_batch", "_kind_for",
                             "memory_facts", "training_steps"],
    # RAG: what changed since the last ingest (unchanged / changed / deleted / still skipped), the no-change
    # answer, and chunking (the size check, the hard cut, the split, the heading trail)
    "rag/ingest.py": ["_find_changes", "_nothing_changed"],
    "rag/chunking.py": ["resolve_settings", "Chunker._hard_cut", "Chunker.split", "Chunker._clip", "_only_headings",
                        "embed_text"],
    # settings resolution: defaults < plan.yaml < --set, coercion and range checks (not range_text: the
    # wording of a range in a message)
    "core/resolve.py": ["parse_value", "coerce", "range_problem", "is_integer_hint", "unknown_keys", "value_name",
                        "merge", "resolve", "plan_layers", "step_settings"],
}

# The fast tests that cover those modules (mutmut runs, for each mutant, only the ones that reach its function).
# No test here loads a model, embeds, trains or starts a subprocess: each mutant runs the tests that reach it, so
# one slow test would multiply the whole run. Guarantees only the slow tests stated have fast twins in
# tests/**/test_*_guarantees.py.
TESTS = [
    "tests/advisor/test_advisor_rules.py",
    "tests/advisor/test_rule_boundaries.py",
    "tests/advisor/test_thresholds_are_data.py",
    "tests/advisor/test_evidence.py",
    "tests/advisor/test_evidence_guarantees.py",
    "tests/advisor/test_rules_guarantees.py",
    "tests/advisor/test_advisor_estimator.py",
    "tests/advisor/test_estimator_by_hand.py",
    "tests/advisor/test_estimate_guarantees.py",
    "tests/engines/test_metrics.py",
    "tests/engines/test_metrics_guarantees.py",
    "tests/engines/test_user_metric.py",
    "tests/engines/test_gate_guarantees.py",
    "tests/engines/test_gate_replay_advice.py",
    "tests/engines/test_prompts_guarantees.py",
    "tests/rag/test_rag_chunking.py",
    "tests/rag/test_ingest_guarantees.py",
    "tests/rag/test_chunking_guarantees.py",
    "tests/core/test_settings.py",
    "tests/core/test_step_settings.py",
    "tests/core/test_resolve_guarantees.py",
]

# Fast tier only; the folder store only (the PostgreSQL twin of each store test runs the same ingest() code and
# would start a server per mutant).
PYTEST_ARGS = ["-m", "not gpu and not slow", "-k", "not postgresql", "-p", "no:cacheprovider"]

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", 37: "caught by type check",
          -11: "segfault", -9: "segfault", None: "not checked"}
KILLED = {"killed", "timeout", "segfault"}


def module_of(path: str) -> str:
    return "rung." + path[: -len(".py")].replace("/", ".")


def patterns() -> list[str]:
    """mutmut's mutant-name globs for TARGETS."""
    out = []
    for path, functions in TARGETS.items():
        module = module_of(path)
        if functions is None:
            out.append(f"{module}.*")
            continue
        for name in functions:
            cls, _, method = name.rpartition(".")
            mangled = f"xǁ{cls}ǁ{method}" if cls else f"x_{name}"
            out.append(f"{module}.{mangled}__mutmut_*")
    return out


def missing_functions() -> list[str]:
    """TARGETS entries that name a function the file no longer has (renamed or moved: fix TARGETS)."""
    problems = []
    for path, functions in TARGETS.items():
        file = ROOT / path
        if not file.is_file():
            problems.append(f"{path}: no such file")
            continue
        tree = ast.parse(file.read_text())
        have = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                have.add(node.name)
            elif isinstance(node, ast.ClassDef):
                have |= {f"{node.name}.{n.name}" for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        problems += [f"{path}: no function {name}" for name in functions or [] if name not in have]
    return problems


def stage() -> None:
    """build/mutation/ from scratch: the package as `rung/`, the tests, the examples, pyproject + [tool.mutmut]."""
    if STAGE.exists():
        shutil.rmtree(STAGE)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    (STAGE / "rung").mkdir(parents=True)
    shutil.copy2(ROOT / "__init__.py", STAGE / "rung" / "__init__.py")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, STAGE / "rung" / package, ignore=ignore)
    shutil.copytree(ROOT / "tests", STAGE / "tests", ignore=ignore)
    shutil.copytree(ROOT / "examples", STAGE / "examples", ignore=ignore)
    toml = json.dumps  # a JSON string or list of strings is a valid TOML value
    config = "\n".join([
        "", "", "# written by tests/mutation/run.py for the staged tree (build/mutation/)", "[tool.mutmut]",
        'source_paths = ["rung"]',
        f"only_mutate = {toml(['rung/' + p for p in TARGETS])}",
        f"also_copy = {toml(['examples/'])}",
        f"pytest_add_cli_args_test_selection = {toml(TESTS)}",
        f"pytest_add_cli_args = {toml(PYTEST_ARGS)}",
        "use_git_change_detection = false",
        "",
    ])
    (STAGE / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + config)


def run_mutmut(max_children: int, only: list[str] | None, log: Path) -> int:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    selected = [p for p in patterns() if not only or any(p.startswith(m + ".") for m in only)]
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *selected]
    print(f"mutmut run in {STAGE.relative_to(ROOT)} ({len(selected)} function patterns, {max_children} children); "
          f"log: {log.relative_to(ROOT)}", flush=True)
    with open(log, "w") as out:
        return subprocess.call(cmd, cwd=STAGE, env=env, stdout=out, stderr=subprocess.STDOUT)


def change_of(diff: str) -> tuple[str, str]:
    """The mutated line(s) before and after, stripped, as mutmut's diff shows them."""
    lines = diff.splitlines()[2:]  # past the ---/+++ header
    before = " / ".join(line[1:].strip() for line in lines if line.startswith("-"))
    after = " / ".join(line[1:].strip() for line in lines if line.startswith("+"))
    return before, after


def function_of(key: str) -> str:
    name = key.rpartition(".")[2].partition("__mutmut_")[0]
    if name.startswith("xǁ"):
        _, cls, method = name.split("ǁ")
        return f"{cls}.{method}"
    return name[2:]


def collect(only: list[str] | None) -> list[dict]:
    """Every selected mutant with its status, and for those not killed the change it made."""
    sys.path.insert(0, str(STAGE))
    cwd = os.getcwd()
    os.chdir(STAGE)
    try:
        from mutmut.mutation.data import SourceFileMutationData
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        selected = patterns()
        mutants = []
        for path in sorted(TARGETS):
            m = SourceFileMutationData(path=Path("rung") / path)
            m.load()
            for key, code in sorted(m.exit_code_by_key.items()):
                if not any(fnmatch.fnmatch(key, p) for p in selected):
                    continue
                module = module_of(path)
                if only and module not in only:
                    continue
                status = STATUS.get(code, "suspicious")
                entry = {"key": key, "module": module, "function": function_of(key), "status": status}
                if status not in KILLED:
                    entry["before"], entry["after"] = change_of(get_diff_for_mutant(key, path=m.path))
                mutants.append(entry)
        return mutants
    finally:
        os.chdir(cwd)


def load_explanations() -> tuple[list[dict], list[dict]]:
    """survivors.yaml: `explained` (exact: module, function, before, after, reason) and `rules` (patterns: module
    and function globs, before/after regular expressions, reason)."""
    import yaml

    data = yaml.safe_load(SURVIVORS.read_text()) if SURVIVORS.exists() else {}
    return list(data.get("explained") or []), list(data.get("rules") or [])


def explains(entry: dict, mutant: dict) -> bool:
    return all(entry.get(k) == mutant[k] for k in ("module", "function", "before", "after"))


def rule_explains(rule: dict, mutant: dict) -> bool:
    return (fnmatch.fnmatch(mutant["module"], rule.get("module", "*"))
            and fnmatch.fnmatch(mutant["function"], rule.get("function", "*"))
            and re.search(rule.get("before", ""), mutant["before"]) is not None
            and re.search(rule.get("after", ""), mutant["after"]) is not None)


def report(mutants: list[dict], seconds: float | None, only: list[str] | None) -> int:
    explained, rules = load_explanations()
    used: set[int] = set()
    used_rules: set[int] = set()
    unexplained = []
    n_explained = 0
    for m in mutants:
        if m["status"] in KILLED:
            continue
        hit = next((i for i, e in enumerate(explained) if explains(e, m)), None)
        if hit is None:
            hit_rule = next((i for i, r in enumerate(rules) if rule_explains(r, m)), None)
            if hit_rule is not None:
                used_rules.add(hit_rule)
                n_explained += 1
                continue
            unexplained.append(m)
            continue
        used.add(hit)
        n_explained += 1
    total = len(mutants)
    killed = sum(m["status"] in KILLED for m in mutants)
    by_module: dict[str, list[int]] = {}
    for m in mutants:
        row = by_module.setdefault(m["module"], [0, 0])
        row[0] += 1
        row[1] += m["status"] in KILLED
    print("\nmodule                              mutants  killed  not killed")
    for module, (n, k) in sorted(by_module.items()):
        print(f"  {module:<34}{n:>7}{k:>8}{n - k:>12}")
    took = f" in {seconds / 60:.1f} min" if seconds is not None else ""
    print(f"\n{total} mutants{took}: {killed} killed, {total - killed} not killed "
          f"({n_explained} explained in {SURVIVORS.relative_to(ROOT)}, {len(unexplained)} unexplained)")
    if not only:
        stale = [e for i, e in enumerate(explained) if i not in used]
        stale_rules = [r for i, r in enumerate(rules) if i not in used_rules]
        for e in stale:
            print(f"warning: stale explanation (no surviving mutant matches it): {e.get('module')} "
                  f"{e.get('function')}: {e.get('before')!r} -> {e.get('after')!r}")
        for r in stale_rules:
            print(f"warning: stale rule (matched no survivor): {r.get('reason', r)}")
    for m in unexplained:
        print(f"\nUNEXPLAINED {m['status']}: {m['key']}\n  module: {m['module']}\n  function: {m['function']}\n"
              f"  before: {m['before']!r}\n  after: {m['after']!r}")
    summary = {"mutants": total, "killed": killed, "not_killed": total - killed, "explained": n_explained,
               "unexplained": len(unexplained), "seconds": seconds,
               "survivors": [m for m in mutants if m["status"] not in KILLED]}
    (STAGE / "report.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    if unexplained:
        print(f"\n{len(unexplained)} surviving mutants are neither killed by a test nor explained: write a test "
              f"that states the guarantee they break, or explain them in {SURVIVORS.relative_to(ROOT)}.")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", action="store_true", help="read the last run's results again")
    parser.add_argument("--only", action="append", help="a module (rung.engines.gate); repeatable")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    problems = missing_functions()
    if problems:
        print("tests/mutation/run.py TARGETS is out of date:\n  " + "\n  ".join(problems))
        return 2
    seconds = None
    if not args.reuse:
        start = time.monotonic()
        stage()
        log = STAGE / "mutmut.log"
        code = run_mutmut(args.max_children, args.only, log)
        seconds = time.monotonic() - start
        if code != 0:
            print(log.read_text()[-4000:])
            print(f"mutmut run failed (exit {code}); the whole log is {log}")
            return 2
    return report(collect(args.only), seconds, args.only)


if __name__ == "__main__":
    sys.exit(main())
