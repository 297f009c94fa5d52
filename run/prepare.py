"""`rung run`, step 1: check a whole plan before any work; every problem at once (RungError, exit 2), no writes.

Checked, one line per problem: the plan's structure and unknown keys (core/plan.py), every data path the plan
names by kind (a file role is one regular file; corpus and documents may be folders; FIFOs and devices never)
and the roles each engine needs, engine names and that their modules are installed, each step's settings
against its dataclass (unknown keys, wrong types, ranges), `--set` overrides, model specs (builtin names, local
folders, hub ids not cached while offline), step ids (plain folder names that collide with nothing rung writes
in the run root), the run root itself, and `--gpus N` against the GPUs torch can see. Settings resolve
through core/resolve.py: dataclass default < plan.yaml `base_model` / `adapter` < step `settings` < `--set`.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rung.core.errors import RungError, did_you_mean
from rung.core.fileio import MAX_TEXT_BYTES, os_error_text, read_yaml, short, shown
from rung.core.endpoint import is_endpoint
from rung.core.inputs import check_model_spec, input_problem, source_problem
from rung.core.models import qlora_problem
from rung.core.plan import resolve_data_path, validate_plan
from rung.core.resolve import merge, parse_value, plan_layers
from rung.core.settings import ClusterSettings
from rung.core.vocab import DATA_ROLES
from rung.core.vocab import ENGINES as PLAN_ENGINES
from rung.engines import registry
from rung.run.state import RUN_ROOT_FILES, now

SAFE_ID = re.compile(r"[A-Za-z0-9_.-]+")
FOLDER_ROLES = ("corpus", "documents")  # data roles that may name a folder; the others name one file
ENDPOINT_ENGINES = ("prompting", "gate")  # engines that can ask an openai:NAME model (core/endpoint.py)
WEIGHT_ENGINES = ("sft", "dpo", "cpt")    # engines that train the base model's weights


@dataclass
class Prepared:
    plan_path: Path
    plan_dir: Path
    run_root: Path
    plan: dict[str, Any]                      # the resolved plan (what resolved_plan.yaml holds)
    cli_settings: dict[str, dict[str, Any]]   # step id -> --set overrides
    gpus: int = 1                                            # processes per machine (ClusterSettings.gpus)
    sets: list[str] = field(default_factory=list)
    cluster: dict[str, Any] = field(default_factory=dict)  # nodes, node_rank, main_address, main_port, cpu

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.plan["steps"]


# ---------------------------------------------------------------- checking ---------------------------

def parse_sets(values: typing.Iterable[str], step_ids: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """`step.key=value` strings -> {step: {key: value}}; values are read as YAML (1e-4, true, [a, b])."""
    overrides: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for raw in values:
        target, sep, text = raw.partition("=")
        step_id, dot, key = target.strip().partition(".")
        if not sep or not dot or not step_id or not key:
            problems.append(f'--set {raw}: expected STEP.KEY=VALUE, for example --set sft.max_steps=20')
            continue
        if step_id not in step_ids:
            problems.append(f'--set {raw}: no step "{step_id}" in the plan{did_you_mean(step_id, step_ids)}'
                            f' (steps: {", ".join(step_ids)})')
            continue
        overrides.setdefault(step_id, {})[key.strip()] = parse_value(text)
    return overrides, problems


def safe_resolve(path: Path) -> Path:
    """path.resolve(), or the absolute path where resolving fails (a symlink loop: its check names it)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def run_root_problems(run_root: Path, given: bool) -> list[str]:
    """The run root must be a folder rung can create or write (the plan's folder, or --out)."""
    flag = "--out" if given else "run root (the plan's folder)"
    probe = run_root
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    try:
        is_dir = probe.is_dir()
        probe.stat()
    except OSError as error:
        return [f"{flag} {run_root}: " + os_error_text(error, "use", probe).split(": ", 1)[-1]]
    if not is_dir:
        return [f"{flag} {run_root}: {probe} is not a folder"]
    if not os.access(probe, os.W_OK | os.X_OK):
        return [f"{flag} {run_root}: {probe} is not writable"]
    return []


def visible_gpus() -> int:
    """CUDA devices torch can see (0 without torch or without CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_gpus(gpus: int, cpu: bool = False) -> list[str]:
    """--gpus N above 1 launches N processes, one per CUDA GPU (or, with --cpu, N CPU processes)."""
    if gpus <= 1 or cpu:
        return []
    have = visible_gpus()
    if have == 0:
        return [f"--gpus {gpus}: no CUDA GPU is visible here (torch.cuda.is_available() is False); "
                "drop --gpus to run on the CPU"]
    if have < gpus:
        return [f"--gpus {gpus}: only {have} CUDA GPU{'s' if have != 1 else ''} visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"]
    return []


def check_cluster(nodes: int, node_rank: int, main_address: str | None) -> list[str]:
    """Multi-node flags: every node runs the same `rung run` with its own --node-rank."""
    problems = []
    if nodes < 1:
        problems.append(f"--nodes {nodes}: must be 1 or more")
    elif nodes > 1 and not main_address:
        problems.append(f"--nodes {nodes}: give --main-address (the rank-0 machine's address)")
    if not 0 <= node_rank < max(nodes, 1):
        problems.append(f"--node-rank {node_rank}: must be between 0 and {max(nodes, 1) - 1} for --nodes {nodes}")
    return problems


def prepare(plan_path: str | Path, *, out: str | Path | None = None, sets: typing.Sequence[str] = (),
            cluster: ClusterSettings | None = None) -> Prepared:
    """Read and check the plan; resolve every step's settings. Raises RungError with every problem."""
    cluster = cluster or ClusterSettings()
    plan_path = Path(plan_path)
    raw = read_yaml(plan_path, what="plan")
    where = str(plan_path)
    problems = validate_plan(raw, where=where)
    if not isinstance(raw, dict):
        raise RungError(problems)
    plan_dir = plan_path.resolve().parent
    plan = copy.deepcopy(raw)
    steps = [s for s in (plan.get("steps") if isinstance(plan.get("steps"), list) else []) if isinstance(s, dict)]
    step_ids = [s["id"] for s in steps if isinstance(s.get("id"), str)]
    overrides, set_problems = parse_sets(sets, step_ids)
    problems += set_problems
    data = plan.get("data") if isinstance(plan.get("data"), dict) else {}
    problems += data_problems(data, plan_dir, where)
    base_model = plan.get("base_model")
    if base_model is not None:
        # openai:NAME is a plan's base model when the steps ask it (prompting, gate); a step that needs its
        # weights (training, export) says so in step_problems
        plan["base_model"], problem = check_model_spec(base_model, plan_dir, f"{where}: base_model",
                                                       endpoint_ok=True)
        problems += [problem] if problem else []
    for index, step in enumerate(steps):
        problems += step_problems(index, step, plan, data, plan_dir, overrides, where)
    run_root = safe_resolve(Path(out).expanduser()) if out else plan_dir
    problems += run_root_problems(run_root, bool(out))
    problems += step_folder_problems(run_root, plan_dir, plan_path, step_ids, data, where)
    problems += check_gpus(cluster.gpus, cluster.cpu)
    problems += check_cluster(cluster.nodes, cluster.node_rank, cluster.main_address)
    if problems:
        raise RungError(problems)
    return Prepared(plan_path=plan_path.resolve(), plan_dir=plan_dir, run_root=run_root, plan=plan,
                    cli_settings=overrides, gpus=cluster.gpus, sets=list(sets),
                    cluster={"nodes": cluster.nodes, "node_rank": cluster.node_rank,
                             "main_address": cluster.main_address, "main_port": cluster.main_port,
                             "cpu": cluster.cpu})


def data_problems(data: dict[str, Any], plan_dir: Path, where: str) -> list[str]:
    """Every named data path exists and is what its role reads; `data` (the plan's) gets the absolute paths."""
    problems = []
    for role, value in data.items():
        if role not in DATA_ROLES or not isinstance(value, (str, list)):
            continue  # validate_plan named it
        values = value if isinstance(value, list) else [value]
        resolved = []
        for item in values:
            if not isinstance(item, str):
                problems.append(f"{where}: data.{role}: expected a path, got {short(item)}")
                continue
            path = resolve_data_path(plan_dir, item)
            # a file role is one regular file; corpus and documents may be folders; FIFOs and devices never
            problem = (f"{path} does not exist" if not os.path.lexists(path)
                       else source_problem(path, "data path") if role in FOLDER_ROLES
                       else input_problem(path, "data file", MAX_TEXT_BYTES))
            if problem:
                problems.append(f"{where}: data.{role}: {problem}")
            resolved.append(str(safe_resolve(path)))
        data[role] = resolved if isinstance(value, list) else resolved[0]
    return problems


def engine_problems(at: str, engine: Any, data: dict[str, Any]) -> list[str] | None:
    """The step's engine: registered, importable, given its data roles. None: no such engine (validate_plan
    reported an unknown name)."""
    if not isinstance(engine, str) or engine not in registry.ENGINES:
        return [f'{at}: engine "{engine}" has no entry in engines/registry.py'] if engine in PLAN_ENGINES else None
    problems = []
    module = registry.ENGINES[engine].split(":")[0]
    try:
        installed = importlib.util.find_spec(module) is not None
    except ImportError:
        installed = False
    if not installed:
        problems.append(f'{at}: engine "{engine}" needs module {module}, which is not installed '
                        f'(pip install -e ".[all]")')
    return problems + [f"{at}: engine {engine} needs data.{role} ({DATA_ROLES[role]})"
                       for role in registry.REQUIRED_DATA.get(engine, ()) if role not in data]


def step_problems(index: int, step: dict[str, Any], plan: dict[str, Any], data: dict[str, Any], plan_dir: Path,
                  overrides: dict[str, dict[str, Any]], where: str) -> list[str]:
    """One step: its engine, then its settings through the layers the engines apply (core/resolve.py), checked
    and written back as step["settings"] (the resolved plan)."""
    engine, step_id = step.get("engine"), step.get("id")
    step_id = step_id if isinstance(step_id, str) else f"#{index}"
    at = f"{where}: steps[{index}] ({shown(step_id)})"
    problems = engine_problems(at, engine, data)
    if problems is None:
        return []
    plan_layer = step.get("settings") if isinstance(step.get("settings"), dict) else {}
    cli_layer = overrides.get(step_id, {})
    chained = step.get("from_step") is not None and engine in registry.MODEL_ENGINES  # its model: from that step
    layers = plan_layers(engine, plan, step, where) + [(f"{at}.settings", plan_layer), (f"--set {step_id}", cli_layer)]
    settings, setting_problems = merge(registry.settings_class(engine), layers)
    problems += setting_problems
    if chained and "model_name_or_path" not in plan_layer and "model_name_or_path" not in cli_layer:
        settings.pop("model_name_or_path", None)  # the engine takes steps[from_step]'s model_dir
    problems += model_problems(at, engine, settings, plan, plan_dir, chained)
    problems += value_problems(at, step_id, engine, settings, plan_dir)
    if cli_layer:  # engines re-apply --set on top: hand them the checked values (1e-3 -> 0.001, abs paths)
        overrides[step_id] = {k: settings[k] for k in cli_layer if k in settings}
    step["settings"] = settings
    return problems


def model_problems(at: str, engine: str, settings: dict[str, Any], plan: dict[str, Any], plan_dir: Path,
                   chained: bool) -> list[str]:
    """The step's model and candidates: local specs checked (and made absolute); an endpoint base model only for
    the engines that ask it questions."""
    problems = []
    value = settings.get("model_name_or_path")
    asks_endpoints = engine in ENDPOINT_ENGINES
    if value is not None and value != plan.get("base_model"):
        settings["model_name_or_path"], problem = check_model_spec(value, plan_dir, f"{at}.settings.model_name_or_path",
                                                                   endpoint_ok=asks_endpoints)
        problems += [problem] if problem else []
    elif (value is not None or engine in WEIGHT_ENGINES) and not asks_endpoints and is_endpoint(
            plan.get("base_model")) and not chained:
        problems.append(f"{at}: engine {engine} needs the model's weights; base_model {shown(plan['base_model'])} "
                        "is behind an endpoint: set settings.model_name_or_path to a local model")
    for i, candidate in enumerate(settings["candidates"] if isinstance(settings.get("candidates"), list) else []):
        settings["candidates"][i], problem = check_model_spec(candidate, plan_dir, f"{at}.settings.candidates[{i}]")
        problems += [problem] if problem else []
    return problems


def value_problems(at: str, step_id: str, engine: str, settings: dict[str, Any], plan_dir: Path) -> list[str]:
    """Settings whose values name things: a user metric beside the plan, QLoRA without CUDA, an index location."""
    problems = []
    if isinstance(settings.get("metric"), str) and settings["metric"]:  # a user metric: beside the plan
        from rung.core.user_metric import resolve_spec
        from rung.engines.judge import metric_problems

        problems += [f"{at}.settings.metric: {p}" for p in
                     metric_problems(resolve_spec(settings["metric"], plan_dir), settings.get("judge_model"))]
    if settings.get("adapter") == "qlora" and visible_gpus() == 0:
        problems.append(f"{at}: {qlora_problem(cuda_available=False)}: use --set {step_id}.adapter=lora on CPU")
    if engine == "rag_index" and isinstance(settings.get("index"), str):   # a folder or a database URL
        from rung.rag.location import is_url, location_problem

        problem = location_problem(settings["index"])
        if problem:
            problems.append(f"{at}.settings.index: {problem}")
        elif not is_url(settings["index"]):   # a folder: relative to the plan, like data paths
            settings["index"] = str(safe_resolve(resolve_data_path(plan_dir, settings["index"])))
    return problems


def step_folder_problems(run_root: Path, plan_dir: Path, plan_path: Path, step_ids: list[str],
                         data: dict[str, Any], where: str) -> list[str]:
    """Each step writes to <run root>/<id>: a plain folder name that is no file rung writes, no data folder."""
    problems = []
    data_paths = [Path(v) for value in data.values() for v in (value if isinstance(value, list) else [value])]
    reserved = {*RUN_ROOT_FILES, plan_path.name} if run_root == plan_dir else set(RUN_ROOT_FILES)
    for index, step_id in enumerate(step_ids):
        folder = run_root / step_id
        if not SAFE_ID.fullmatch(step_id) or step_id.startswith("."):
            problems.append(f'{where}: steps[{index}]: id "{shown(step_id)}" must be a plain folder name '
                            "(letters, digits, _ . -, not starting with a dot): each step writes to <run root>/<id>")
        elif step_id in reserved:
            problems.append(f'{where}: steps[{index}]: id "{step_id}" is the name of a file rung writes in the run '
                            f"root ({', '.join(sorted(reserved))}); rename the step")
        elif any(p == folder or folder in p.parents for p in data_paths):
            problems.append(f'{where}: steps[{index}]: id "{step_id}" is a data folder in the run root; '
                            f"rename the step or pass --out DIR")
        elif os.path.lexists(folder) and not folder.is_dir():
            problems.append(f'{where}: steps[{index}]: id "{step_id}": {folder} exists and is not a folder; '
                            "rename the step or pass --out DIR")
    return problems


PRINTED_KEYS = ("name", "route", "method", "adapter", "base_model", "data", "steps")


def resolved_summary_text(prep: Prepared) -> str:
    """What `rung run` prints before any work: the parts of resolved_plan.yaml that decide what runs."""
    shown = {k: prep.plan[k] for k in PRINTED_KEYS if prep.plan.get(k) is not None}
    return yaml.safe_dump(shown, sort_keys=False, allow_unicode=True, width=100)


def resolved_plan_text(prep: Prepared) -> str:
    header = (f"# Resolved by `rung run` from {prep.plan_path} on {now()}\n"
              f"# settings: dataclass default < plan.yaml base_model < step settings < --set"
              f"{' (' + ' '.join(prep.sets) + ')' if prep.sets else ''}; data paths made absolute.\n"
              f"# This file is itself a runnable plan.\n")
    return header + yaml.safe_dump(prep.plan, sort_keys=False, allow_unicode=True, width=100)


