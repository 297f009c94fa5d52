"""The plan schema: what `rung plan` writes and `rung run` executes. One source of truth for both.

plan.yaml (version 1):

    version: 1
    name: sql-assistant
    goal: schema                  # from the answers
    route: fine_tuning            # prompting | rag | fine_tuning | continued_pretraining | bigger_model
    method: sft                   # sft | dpo | sft_then_dpo | grpo | sft_then_grpo; null outside fine_tuning
    adapter: lora                 # lora | qlora | full; null where it does not apply
    base_model: builtin:tiny      # hub id, local path, or builtin:tiny
    data:                         # paths relative to this file's folder; keys by role (DATA_ROLES)
      train: data/train.jsonl
    steps:                        # run in order
      - id: sft
        engine: sft               # one of ENGINES
        description: LoRA SFT on the labelled examples
        from_step: null           # start from another step's output model (e.g. dpo after sft)
        settings: {...}           # engine settings: the dataclasses in core/settings.py
    estimate: {...}               # the estimator's figures for this route
    rules: [{id, because}]
    warnings: [...]
    answers: {...}                # the answers the plan came from
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rung.core.checks import entry_problems, unknown_key_problems
from rung.core.errors import did_you_mean
from rung.core.fileio import read_yaml, short, shown
# The vocabulary lives in core/vocab.py; the plan schema re-exports it, because that is where readers look.
from rung.core.vocab import ADAPTERS, DATA_ROLES, ENGINES, METHODS, ROUTES

PLAN_VERSION = 1

TOP_KEYS = ("version", "name", "goal", "route", "method", "adapter", "base_model", "data", "steps",
            "estimate", "rules", "warnings", "flip_when", "answers", "evidence")
REQUIRED_TOP_KEYS = ("version", "name", "route", "steps")
STEP_KEYS = ("id", "engine", "description", "from_step", "settings")


def validate_plan(plan: Any, where: str = "plan.yaml") -> list[str]:
    """Structural problems in a plan, all of them, each naming the key. Engine settings are checked by engines."""
    if not isinstance(plan, dict):
        return [f"{where}: expected a mapping at the top level, got {type(plan).__name__}"]
    unknown = [key for key in plan if key not in TOP_KEYS]
    if len(unknown) > 3 and len(unknown) * 2 > len(plan):  # a wrong file: never list its lines back
        return [f"{where}: {len(unknown)} of its {len(plan)} keys are not plan keys: is this a plan (what "
                f"`rung plan` writes)? Plan keys: {', '.join(TOP_KEYS)}"]
    problems = unknown_key_problems(plan, TOP_KEYS, where)
    for key in REQUIRED_TOP_KEYS:
        if key not in plan:
            problems.append(f'{where}: missing key "{key}"')
    if "version" in plan and plan["version"] != PLAN_VERSION:
        problems.append(f"{where}: version {short(plan['version'])} is not supported "
                        f"(this rung reads version {PLAN_VERSION})")
    if "route" in plan and plan["route"] not in ROUTES:
        problems.append(f'{where}: route "{shown(plan["route"])}" is not one of {", ".join(ROUTES)}'
                        f'{did_you_mean(str(plan["route"]), ROUTES)}')
    if plan.get("method") is not None and plan["method"] not in METHODS:
        problems.append(f'{where}: method "{shown(plan["method"])}" is not one of {", ".join(METHODS)}')
    if plan.get("adapter") is not None and plan["adapter"] not in ADAPTERS:
        problems.append(f'{where}: adapter "{shown(plan["adapter"])}" is not one of {", ".join(ADAPTERS)}')
    data = plan.get("data") or {}
    if not isinstance(data, dict):
        problems.append(f"{where}: data: expected a mapping of role -> path")
    else:
        problems += unknown_key_problems(data, DATA_ROLES, f"{where}: data", what="role")
        for role, value in data.items():
            if role in DATA_ROLES and not isinstance(value, (str, list)):
                problems.append(f"{where}: data.{role}: expected a path or a list of paths")
    steps = plan.get("steps")
    if "steps" in plan and (not isinstance(steps, list) or not steps):
        problems.append(f"{where}: steps: expected a non-empty list")
        steps = []
    seen: set[str] = set()
    for index, step in enumerate(steps or []):
        at = f"{where}: steps[{index}]"
        if not isinstance(step, dict):
            problems.append(f"{at}: expected a mapping")
            continue
        problems += entry_problems(step, STEP_KEYS, seen, at)
        engine = step.get("engine")
        if engine not in ENGINES:
            problems.append(f'{at}: unknown engine "{shown(engine)}"{did_you_mean(str(engine), ENGINES)}'
                            f' (engines: {", ".join(ENGINES)})')
        source = step.get("from_step")
        if source is not None and (not isinstance(source, str) or source not in seen):
            problems.append(f'{at}: from_step "{shown(source)}" does not name an earlier step')
        if step.get("settings") is not None and not isinstance(step["settings"], dict):
            problems.append(f"{at}: settings: expected a mapping")
    return problems


def load_plan(path: str | Path) -> dict[str, Any]:
    """Read plan.yaml; returns the dict. Raises RungError listing every structural problem."""
    from rung.core.errors import RungError

    plan = read_yaml(path, what="plan")
    problems = validate_plan(plan, where=str(path))
    if problems:
        raise RungError(problems)
    return plan


def resolve_data_path(plan_dir: Path, value: str) -> Path:
    """Data paths are relative to the plan file's folder unless absolute."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (plan_dir / path)
