"""`rung run`: check a whole plan before any work, then run its steps in order and write report.md.

    prepare(plan_path, out=, gpus=, sets=)  -> Prepared   every problem at once (RungError, exit 2), no writes
    execute(prepared, resume=)              -> report.md  one folder per step, a state file for --resume

Checked before any step runs, one line per problem: the plan's structure and unknown keys (advisor.plan),
every data path the plan names and the roles each engine needs, engine names and that their modules are
installed, each step's settings against its dataclass (unknown keys, wrong types), `--set` overrides, model
specs (builtin names, local folders, hub ids not cached while offline), and `--gpus N` against the GPUs
torch can see. Settings resolve as dataclass default < plan.yaml `base_model` < step `settings` < `--set`.

Files in the run root (the plan's folder unless --out): resolved_plan.yaml (a runnable plan: resolved
settings, absolute data paths), run_state.json (per-step status, outputs, metrics, wall time), report.md,
and <step id>/ for each step's outputs.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import importlib.util
import json
import os
import re
import resource
import sys
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from rung.core.errors import RungError, did_you_mean
from rung.core.fileio import atomic_write_json, atomic_write_text, read_yaml
from rung.core.plan import DATA_ROLES, resolve_data_path, validate_plan
from rung.core.plan import ENGINES as PLAN_ENGINES
from rung.engines import registry
from rung.core.protocol import StepContext, StepResult

STATE_FILE = "run_state.json"
RESOLVED_FILE = "resolved_plan.yaml"
REPORT_FILE = "report.md"
STATE_VERSION = 1
# What `builtin:<name>` may name; trainers.models may declare more in BUILTIN_MODELS.
DEFAULT_BUILTINS = ("tiny", "tiny-base")
SAFE_ID = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass
class Prepared:
    plan_path: Path
    plan_dir: Path
    run_root: Path
    plan: dict[str, Any]                      # the resolved plan (what resolved_plan.yaml holds)
    cli_settings: dict[str, dict[str, Any]]   # step id -> --set overrides
    gpus: int = 0
    sets: list[str] = field(default_factory=list)
    cluster: dict[str, Any] = field(default_factory=dict)  # nodes, node_rank, main_address, main_port

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
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        overrides.setdefault(step_id, {})[key.strip()] = value
    return overrides, problems


def _type_problem(name: str, hint: Any, value: Any) -> tuple[Any, str | None]:
    """Coerce what YAML gets wrong (1e-4 is a string in YAML 1.1) and name a wrong type; (value, problem)."""
    if value is None:
        return value, None if (hint is Any or type(None) in typing.get_args(hint)) else f"{name}: must not be empty"
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = [h for h in (typing.get_args(hint) if union else (hint,)) if h is not type(None)]
    if any(h is Any for h in options):
        return value, None
    for option in options:
        base = typing.get_origin(option) or option
        if base is bool and isinstance(value, bool):
            return value, None
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value, None
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), None
        if base is str and isinstance(value, str):
            return value, None
        if base in (list, tuple) and isinstance(value, (list, tuple)):
            return list(value), None
        if base is dict and isinstance(value, dict):
            return value, None
    if any((typing.get_origin(o) or o) is float for o in options) and isinstance(value, str):
        try:
            return float(value), None
        except ValueError:
            pass
    wanted = " or ".join(getattr(typing.get_origin(o) or o, "__name__", str(o)) for o in options)
    return value, f"{name}: expected {wanted}, got {value!r}"


def resolve_settings(cls: type, layers: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], list[str]]:
    """Merge (where, values) layers over the dataclass defaults; unknown keys and wrong types are problems."""
    from rung.core.settings import check_keys  # pure Python

    hints = typing.get_type_hints(cls)
    merged = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
              for f in dataclasses.fields(cls)}
    problems: list[str] = []
    for where, values in layers:
        if not values:
            continue
        problems += check_keys(cls, values, where)
        for key, value in values.items():
            if key in hints:
                value, problem = _type_problem(f"{where}.{key}", hints[key], value)
                if problem:
                    problems.append(problem)
                merged[key] = value
    adapter = merged.get("adapter")
    if adapter is not None and "adapter" in hints and adapter not in ("lora", "qlora", "full"):
        problems.append(f'{layers[-1][0] if layers else "settings"}: adapter "{adapter}" is not one of lora, qlora, '
                        f'full{did_you_mean(str(adapter), ("lora", "qlora", "full"))}')
    return merged, problems


def builtin_names() -> tuple[str, ...]:
    try:
        import rung.core.models as models
    except ImportError:
        return DEFAULT_BUILTINS
    names = getattr(models, "BUILTIN_MODELS", None)
    if not names:
        return DEFAULT_BUILTINS
    return tuple(str(n).split(":", 1)[1] if str(n).startswith("builtin:") else str(n) for n in names)


def check_model(spec: Any, plan_dir: Path, where: str) -> tuple[Any, str | None]:
    """A model spec -> (spec with a relative folder made absolute, problem or None). Builds nothing.

    Relative model paths are read from the plan's folder, like data paths.
    """
    if not isinstance(spec, str) or not spec.strip():
        return spec, f"{where}: expected a model (hub id, local folder or builtin:tiny), got {spec!r}"
    if spec.startswith("builtin:"):
        names = builtin_names()
        name = spec.split(":", 1)[1]
        if name not in names:
            return spec, (f'{where}: unknown built-in model "{spec}"{did_you_mean(name, names)} '
                          f'(built-ins: {", ".join("builtin:" + n for n in names)})')
        return spec, None
    path = Path(spec).expanduser()
    candidate = path if path.is_absolute() else plan_dir / path
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or os.sep + os.sep in spec
    if candidate.exists() or (looks_like_path and path.exists()):
        folder = candidate if candidate.exists() else path
        if not folder.is_dir() or not ((folder / "config.json").exists() or (folder / "adapter_config.json").exists()):
            return spec, f"{where}: {folder} is not a model folder (no config.json or adapter_config.json)"
        return str(folder.resolve()), None
    if looks_like_path:
        return spec, f"{where}: model path {candidate} does not exist"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(spec, "config.json")
        except Exception:  # an id huggingface_hub rejects
            cached = None
        if not isinstance(cached, str):
            return spec, (f'{where}: hub model "{spec}" is not in the local cache and HF_HUB_OFFLINE=1: '
                          f"download it first (huggingface-cli download {spec}) or name a local folder")
    return spec, None


def visible_gpus() -> int:
    """CUDA devices torch can see (0 without torch or without CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_gpus(gpus: int) -> list[str]:
    if gpus < 0:
        return [f"--gpus {gpus}: must be 0 (this process, CPU or one GPU) or a positive count"]
    if gpus == 0:
        return []
    have = visible_gpus()
    if have == 0:
        return [f"--gpus {gpus}: no CUDA GPU is visible here (torch.cuda.is_available() is False); "
                "drop --gpus to run on the CPU"]
    if have < gpus:
        return [f"--gpus {gpus}: only {have} CUDA GPU{'s' if have != 1 else ''} visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"]
    return []


def check_cluster(gpus: int, nodes: int, node_rank: int, main_address: str | None) -> list[str]:
    """Multi-node flags: every node runs the same `rung run` with its own --node-rank."""
    problems = []
    if nodes < 1:
        problems.append(f"--nodes {nodes}: must be 1 or more")
    elif nodes > 1:
        if gpus < 1:
            problems.append(f"--nodes {nodes}: give --gpus (GPUs per node) too")
        if not main_address:
            problems.append(f"--nodes {nodes}: give --main-address (the rank-0 machine's address)")
    if not 0 <= node_rank < max(nodes, 1):
        problems.append(f"--node-rank {node_rank}: must be between 0 and {max(nodes, 1) - 1} for --nodes {nodes}")
    return problems


def prepare(plan_path: str | Path, *, out: str | Path | None = None, gpus: int = 0,
            sets: typing.Sequence[str] = (), nodes: int = 1, node_rank: int = 0,
            main_address: str | None = None, main_port: int | None = None) -> Prepared:
    """Read and check the plan; resolve every step's settings. Raises RungError with every problem."""
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

    # data: every named path exists; each engine gets the roles it needs
    data = plan.get("data") if isinstance(plan.get("data"), dict) else {}
    for role, value in data.items():
        if role not in DATA_ROLES or not isinstance(value, (str, list)):
            continue  # validate_plan named it
        values = value if isinstance(value, list) else [value]
        resolved = []
        for item in values:
            path = resolve_data_path(plan_dir, str(item))
            if not path.exists():
                problems.append(f"{where}: data.{role}: {path} does not exist")
            resolved.append(str(path.resolve()))
        data[role] = resolved if isinstance(value, list) else resolved[0]

    base_model = plan.get("base_model")
    if base_model is not None:
        plan["base_model"], problem = check_model(base_model, plan_dir, f"{where}: base_model")
        if problem:
            problems.append(problem)

    for index, step in enumerate(steps):
        engine, step_id = step.get("engine"), step.get("id", f"#{index}")
        at = f"{where}: steps[{index}] ({step_id})"
        if engine not in registry.ENGINES:
            if engine in PLAN_ENGINES:
                problems.append(f'{at}: engine "{engine}" has no entry in engines/registry.py')
            continue  # an unknown name was reported by validate_plan
        module = registry.ENGINES[engine].split(":")[0]
        try:
            installed = importlib.util.find_spec(module) is not None
        except ImportError:
            installed = False
        if not installed:
            problems.append(f'{at}: engine "{engine}" needs module {module}, which is not installed '
                            f'(pip install -e ".[all]")')
        for role in registry.REQUIRED_DATA.get(engine, ()):
            if role not in data:
                problems.append(f"{at}: engine {engine} needs data.{role} ({DATA_ROLES[role]})")
        try:
            cls = registry.settings_class(engine)
        except ImportError:
            continue  # named above: the engine's module is not installed
        plan_layer = step.get("settings") if isinstance(step.get("settings"), dict) else {}
        cli_layer = overrides.get(step_id, {})
        if cls is None:
            step["settings"] = {**plan_layer, **cli_layer}
            continue
        if isinstance(cls, dict):  # an engine that declares its settings as {key: default}
            for where_, layer in ((f"{at}.settings", plan_layer), (f"--set {step_id}", cli_layer)):
                problems += [f'{where_}: unknown setting "{k}"{did_you_mean(str(k), cls)}'
                             f' (settings: {", ".join(cls) or "none"})' for k in layer if k not in cls]
            step["settings"] = {**cls, **plan_layer, **cli_layer}
            continue
        # the same layers the engines apply: a from_step model comes from that step's output at run time
        layers = []
        fields = {f.name for f in dataclasses.fields(cls)}
        chained = step.get("from_step") is not None and engine in registry.MODEL_ENGINES
        if base_model is not None and "model_name_or_path" in fields and not chained:
            layers.append((f"{where}: base_model", {"model_name_or_path": plan["base_model"]}))
        if plan.get("adapter") and engine in registry.PLAN_ADAPTER_ENGINES:
            layers.append((f"{where}: adapter", {"adapter": plan["adapter"]}))
        layers += [(f"{at}.settings", plan_layer), (f"--set {step_id}", cli_layer)]
        settings, setting_problems = resolve_settings(cls, layers)
        problems += setting_problems
        if chained and "model_name_or_path" not in plan_layer and "model_name_or_path" not in cli_layer:
            settings.pop("model_name_or_path", None)  # the engine takes steps[from_step]'s model_dir
        value = settings.get("model_name_or_path")
        if value is not None and value != plan.get("base_model"):
            settings["model_name_or_path"], problem = check_model(value, plan_dir, f"{at}.settings.model_name_or_path")
            if problem:
                problems.append(problem)
        for i, candidate in enumerate(settings.get("candidates") or []):
            settings["candidates"][i], problem = check_model(candidate, plan_dir, f"{at}.settings.candidates[{i}]")
            if problem:
                problems.append(problem)
        if settings.get("adapter") == "qlora" and visible_gpus() == 0:
            problems.append(f"{at}: adapter qlora needs a CUDA GPU (4-bit bitsandbytes); none is visible: "
                            f"use --set {step_id}.adapter=lora on CPU")
        if cli_layer:  # engines re-apply --set on top: hand them the checked values (1e-3 -> 0.001, abs paths)
            overrides[step_id] = {k: settings[k] for k in cli_layer if k in settings}
        step["settings"] = settings

    run_root = Path(out).expanduser().resolve() if out else plan_dir
    data_paths = [Path(v) for value in data.values() for v in (value if isinstance(value, list) else [value])]
    for index, step_id in enumerate(step_ids):
        if not SAFE_ID.fullmatch(step_id) or step_id in (".", ".."):
            problems.append(f'{where}: steps[{index}]: id "{step_id}" must be a plain folder name '
                            "(letters, digits, _ . -): each step writes to <run root>/<id>")
        elif any(p == run_root / step_id or (run_root / step_id) in p.parents for p in data_paths):
            problems.append(f'{where}: steps[{index}]: id "{step_id}" is a data folder in the run root; '
                            f"rename the step or pass --out DIR")
    problems += check_gpus(gpus)
    problems += check_cluster(gpus, nodes, node_rank, main_address)
    if problems:
        raise RungError(problems)
    return Prepared(plan_path=plan_path.resolve(), plan_dir=plan_dir, run_root=run_root, plan=plan,
                    cli_settings=overrides, gpus=gpus, sets=list(sets),
                    cluster={"nodes": nodes, "node_rank": node_rank, "main_address": main_address,
                             "main_port": main_port})


PRINTED_KEYS = ("name", "route", "method", "adapter", "base_model", "data", "steps")


def resolved_summary_text(prep: Prepared) -> str:
    """What `rung run` prints before any work: the parts of resolved_plan.yaml that decide what runs."""
    shown = {k: prep.plan[k] for k in PRINTED_KEYS if prep.plan.get(k) is not None}
    return yaml.safe_dump(shown, sort_keys=False, allow_unicode=True, width=100)


def resolved_plan_text(prep: Prepared) -> str:
    header = (f"# Resolved by `rung run` from {prep.plan_path} on {_now()}\n"
              f"# settings: dataclass default < plan.yaml base_model < step settings < --set"
              f"{' (' + ' '.join(prep.sets) + ')' if prep.sets else ''}; data paths made absolute.\n"
              f"# This file is itself a runnable plan.\n")
    return header + yaml.safe_dump(prep.plan, sort_keys=False, allow_unicode=True, width=100)


# ---------------------------------------------------------------- running ----------------------------

def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return str(value)


def _plan_fingerprint(plan: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(_jsonable(plan), sort_keys=True).encode()).hexdigest()[:16]


def load_state(run_root: Path) -> dict[str, Any] | None:
    path = run_root / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RungError(f"{path}: cannot read the run state ({error}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise RungError(f"{path}: not a run state this rung can read; delete it to start over")
    return state


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux (bytes on macOS); children covers `accelerate launch` workers
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / (1024 * 1024)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return round(max(own, children), 1)


def _gpu_reset() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _gpu_peak_gb() -> float | None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 1e9, 2)
    return None


def execute(prep: Prepared, *, resume: bool = False, echo: Callable[[str], None] = print,
            engine_lookup: Callable[[str], Callable] | None = None) -> Path:
    """Run the steps in order, each in <run root>/<step id>; write state after every change and report.md."""
    engine_lookup = engine_lookup or registry.engine_function
    root = prep.run_root
    root.mkdir(parents=True, exist_ok=True)
    fingerprint = _plan_fingerprint(prep.plan)
    state = load_state(root) if resume else None
    if resume and state is None:
        echo(f"No earlier run in {root}: starting from the first step.")
    if state is not None and state.get("plan_fingerprint") != fingerprint:
        echo("Note: the plan or its settings changed since the interrupted run; finished steps are kept.")
    if state is None:
        state = {"version": STATE_VERSION, "plan": str(prep.plan_path), "started": _now(), "steps": {}}
    state["plan_fingerprint"] = fingerprint
    state["gpus"] = prep.gpus
    atomic_write_text(root / RESOLVED_FILE, resolved_plan_text(prep))
    atomic_write_json(root / STATE_FILE, state)

    outputs: dict[str, dict[str, Any]] = {}
    total = len(prep.steps)
    for number, step in enumerate(prep.steps, start=1):
        step_id, engine = step["id"], step["engine"]
        record = state["steps"].get(step_id)
        if record and record.get("status") in ("done", "open"):
            echo(f"[{number}/{total}] {step_id}: {record['status']} in an earlier run, skipped (--resume)")
            outputs[step_id] = record.get("outputs", {})
            continue
        step_resume = bool(resume and record and record.get("status") in ("running", "failed"))
        run_dir = root / step_id
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "engine": engine, "status": "running", "started": _now(),
            "attempts": (record or {}).get("attempts", 0) + 1,
            "wall_s_earlier": round((record or {}).get("wall_s", 0.0) or 0.0, 2) if step_resume else 0.0,
        }
        state["steps"][step_id] = record
        atomic_write_json(root / STATE_FILE, state)
        description = step.get("description") or ""
        adapter = (step.get("settings") or {}).get("adapter")  # the resolved one: --set may have changed it
        echo(f"[{number}/{total}] {step_id} ({engine}{', adapter ' + adapter if adapter else ''})"
             f"{': ' + description if description else ''}"
             f"{' - resuming' if step_resume else ''}")
        ctx = StepContext(plan=prep.plan, plan_dir=prep.plan_dir, run_dir=run_dir, resume=step_resume,
                          outputs=dict(outputs), cli_settings=dict(prep.cli_settings.get(step_id, {})),
                          gpus=prep.gpus, **prep.cluster)
        _gpu_reset()
        started = time.perf_counter()
        try:
            result = engine_lookup(engine)(copy.deepcopy(step), ctx)
            if not isinstance(result, StepResult):
                raise TypeError(f"engine {engine} returned {type(result).__name__}, expected StepResult")
        except BaseException as error:
            interrupted = isinstance(error, KeyboardInterrupt)
            record.update(status="failed", finished=_now(),
                          wall_s=round(time.perf_counter() - started + record["wall_s_earlier"], 2),
                          error="interrupted" if interrupted else f"{type(error).__name__}: {str(error).strip()}")
            atomic_write_json(root / STATE_FILE, state)
            write_report(prep, state)
            if isinstance(error, RungError):
                lines = str(error.message).splitlines() or [type(error).__name__]
                raise RungError([f"step {step_id} ({engine}): {line}" for line in lines]
                                + [f"fix it, then continue with: rung run {prep.plan_path} --resume"
                                   + (f" --out {root}" if root != prep.plan_dir else "")]) from None
            raise
        wall = time.perf_counter() - started + record["wall_s_earlier"]
        status = "open" if (engine == "manual" or result.metrics.get("status") == "open") else "done"
        record.update(status=status, finished=_now(), wall_s=round(wall, 2), outputs=_jsonable(result.outputs),
                      metrics=_jsonable(result.metrics), summary=result.summary or "",
                      peak_rss_mb=_peak_rss_mb(), gpu_peak_gb=_gpu_peak_gb())
        outputs[step_id] = record["outputs"]
        atomic_write_json(root / STATE_FILE, state)
        write_report(prep, state)
        echo(f"[{number}/{total}] {step_id}: {status} in {_duration(wall)}")
    state["finished"] = _now()
    atomic_write_json(root / STATE_FILE, state)
    return write_report(prep, state)


# ---------------------------------------------------------------- report.md --------------------------

def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{seconds / 3600:.2f} h"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value)[:120] + "`"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _link(path_text: str, root: Path) -> str:
    path = Path(path_text)
    try:
        rel = path.resolve().relative_to(root.resolve())
        return f"[{rel}]({rel.as_posix()})"
    except (ValueError, OSError):
        return f"`{path_text}`"


def _step_files(run_dir: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if p.is_file() and p.suffix in suffixes)


def _hours_text(hours: Any) -> str:
    return _duration(float(hours) * 3600) if isinstance(hours, (int, float)) else "-"


def _money_text(usd: Any) -> str:
    if not isinstance(usd, (int, float)):
        return "-"
    return f"${usd:,.2f}" if usd >= 0.01 else f"${usd:.2g}"


def _estimate_cell(est: dict[str, Any]) -> str:
    parts = []
    if est.get("gpu_hours") is not None:
        parts.append(f"{_hours_text(est['gpu_hours'])} GPU time")
    if est.get("cost_usd") is not None:
        parts.append(_money_text(est["cost_usd"]))
    if est.get("memory_gb") is not None:
        parts.append(f"{est['memory_gb']:.2f} GB/GPU" + ("" if est.get("fits", True) is not False else " (does not fit)"))
    return ", ".join(parts) or "-"


def _device_text(gpus: int) -> str:
    if gpus:
        torch = sys.modules.get("torch")
        name = torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else "GPU"
        return f"{gpus} x {name}"
    return f"CPU ({os.cpu_count()} cores)"


def _estimate_section(plan: dict[str, Any], prep_steps: list[dict[str, Any]], records: dict[str, Any],
                      gpus: int) -> list[str]:
    """The plan's estimate (advisor.estimator figures, for the plan's target GPU) next to what this run measured."""
    estimate = plan.get("estimate") if isinstance(plan.get("estimate"), dict) else {}
    per_step = {s.get("step"): s for s in estimate.get("steps") or [] if isinstance(s, dict)}
    target = estimate.get("gpu") or "-"
    if estimate.get("gpus") and estimate.get("gpu"):
        target = f"{estimate['gpus']} x {estimate['gpu']}"
    rate = estimate.get("usd_per_gpu_hour")
    lines = [f"| step | estimated (plan.yaml, on {target}) | measured (this run, on {_device_text(gpus)}) |",
             "|---|---|---|"]
    total_wall = 0.0
    for step in prep_steps:
        record = records.get(step["id"], {})
        wall = record.get("wall_s")
        total_wall += wall or 0.0
        est = per_step.get(step["id"]) or per_step.get(step["engine"])
        measured = "-" if wall is None else f"{_duration(wall)} wall"
        if record.get("gpu_peak_gb") is not None:
            measured += f", {record['gpu_peak_gb']:.2f} GB GPU peak"
        if record.get("peak_rss_mb") is not None:
            measured += f", {record['peak_rss_mb'] / 1024:.2f} GB peak RSS"
        lines.append(f"| {step['id']} | {_estimate_cell(est) if est else '-'} | {measured} |")
    measured_total = f"{_duration(total_wall)} wall"
    if gpus and isinstance(rate, (int, float)):
        measured_total += f", {_money_text(total_wall / 3600 * gpus * rate)} at the plan's ${rate}/GPU-hour"
    elif not gpus:
        measured_total += ", no GPU rented"
    total = _estimate_cell(estimate)
    if estimate.get("wall_hours") is not None:
        total += f" ({_hours_text(estimate['wall_hours'])} wall)"
    lines.append(f"| **total** | {total} | {measured_total} |")
    notes = [estimate["note"]] if estimate.get("note") else []
    notes += list(estimate.get("assumptions") or [])
    if notes:
        lines += ["", "Estimate assumptions: " + "; ".join(str(n) for n in notes) + "."]
    return lines


def _embedded_samples(path: Path, root: Path, max_lines: int = 40) -> list[str]:
    """The first lines of a step's samples.md (answers before/after, side by side), headings demoted."""
    text = path.read_text(encoding="utf-8").splitlines()
    body = [("##" + line) if line.startswith("#") else line for line in text[:max_lines]]
    more = f"\n_{len(text) - max_lines} more lines in {_link(str(path), root)}_" if len(text) > max_lines else ""
    return body + ([more] if more else []) + [""]


def write_report(prep: Prepared, state: dict[str, Any]) -> Path:
    root = prep.run_root
    plan = prep.plan
    records = state.get("steps", {})
    lines = [f"# Run report: {plan.get('name', prep.plan_path.stem)}", ""]
    facts = [f"plan: {_link(str(prep.plan_path), root)}", f"route: **{plan.get('route')}**"]
    if plan.get("method"):
        facts.append(f"method: {plan['method']}")
    if plan.get("base_model"):
        facts.append(f"base model: `{plan['base_model']}`")
    facts.append(f"resolved settings: [{RESOLVED_FILE}]({RESOLVED_FILE})")
    lines += [" · ".join(facts), "", f"Started {state.get('started', '-')}"
              + (f", finished {state['finished']}." if state.get("finished") else " (not finished)."), ""]

    lines += ["| # | step | engine | status | wall time | headline |", "|---|---|---|---|---|---|"]
    for number, step in enumerate(prep.steps, start=1):
        record = records.get(step["id"], {})
        metrics = record.get("metrics") or {}
        headline = ", ".join(f"{k} {_fmt(v)}" for k, v in list(
            (k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))[:3])
        status = record.get("status", "not started")
        lines.append(f"| {number} | [{step['id']}](#{number}-{step['id'].replace('_', '-')}) | {step['engine']} | "
                     f"{status} | {_duration(record.get('wall_s'))} | {headline or '-'} |")
    lines.append("")

    open_steps = [s for s in prep.steps if records.get(s["id"], {}).get("status") == "open"]
    failed = [s for s in prep.steps if records.get(s["id"], {}).get("status") in ("failed", "running")]
    if failed:
        step = failed[0]
        lines += [f"**Stopped at `{step['id']}`**: {records[step['id']].get('error', 'interrupted')}. "
                  f"Continue with `rung run {prep.plan_path} --resume"
                  + (f" --out {root}`." if root != prep.plan_dir else "`."), ""]
    if open_steps:
        lines += ["## Open to-dos", ""]
        lines += [records[s["id"]].get("summary") or f"- [ ] {s.get('description') or s['id']}" for s in open_steps]
        lines.append("")

    lines += ["## Estimate vs actual", ""]
    lines += _estimate_section(plan, prep.steps, records, int(state.get("gpus") or 0))
    if not state.get("gpus"):
        lines += ["", "The estimate is for the plan's target GPU; on a CPU, wall time is not comparable (a run with "
                  "builtin:tiny checks the pipeline, not the cost)."]
    lines.append("")

    for number, step in enumerate(prep.steps, start=1):
        record = records.get(step["id"], {})
        run_dir = root / step["id"]
        title = f"## {number}. {step['id']}"
        lines += [title, ""]
        meta = [f"engine `{step['engine']}`"]
        if (step.get("settings") or {}).get("adapter"):
            meta.append(f"adapter `{step['settings']['adapter']}`")
        meta += [f"status **{record.get('status', 'not started')}**",
                f"wall time {_duration(record.get('wall_s'))}"]
        if record.get("attempts", 1) > 1:
            meta.append(f"{record['attempts']} attempts")
        if step.get("from_step"):
            meta.append(f"starts from `{step['from_step']}`")
        lines += [" · ".join(meta), ""]
        if step.get("description"):
            lines += [f"_{step['description']}_", ""]
        if record.get("error"):
            lines += [f"Error: `{record['error'][:500]}`", ""]
        if record.get("summary") and record.get("status") != "open":
            lines += [record["summary"].rstrip(), ""]
        outs = record.get("outputs") or {}
        if outs:
            lines.append("Outputs:")
            for key, value in outs.items():
                shown = _link(value, root) if isinstance(value, str) and ("/" in value or os.sep in value) else _fmt(value)
                lines.append(f"- {key}: {shown}")
            lines.append("")
        metrics = {k: v for k, v in (record.get("metrics") or {}).items() if k != "status"}
        if metrics:
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]
            lines.append("")
        samples = outs.get("samples")
        if isinstance(samples, str) and samples.endswith(".md") and Path(samples).is_file():
            lines += _embedded_samples(Path(samples), root)
        linked = {str(Path(v).resolve()) for v in outs.values() if isinstance(v, str)}
        for doc in _step_files(run_dir, (".md",)):
            if str(doc.resolve()) not in linked:
                lines.append(f"- {_link(str(doc), root)}")
        plots = _step_files(run_dir, (".png", ".svg"))
        for plot in plots:
            rel = plot.resolve().relative_to(root.resolve()).as_posix()
            lines += ["", f"![{plot.stem}]({rel})"]
        if plots or _step_files(run_dir, (".md",)):
            lines.append("")
    path = root / REPORT_FILE
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
