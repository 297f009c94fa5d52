"""The one settings resolve, for `rung train` and `rung run` alike.

    dataclass default < plan base_model < plan adapter < step settings (or --config) < flags < --set

Each layer is (where, {key: value}); `where` names the source in every problem (a file and key, a flag).
Unknown keys fail with a did-you-mean, values are type-checked (YAML 1.1 reads 2e-4 as a string: such
strings become floats), and every problem is reported at once.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Iterable, Mapping, Sequence

from rung.core.errors import RungError, did_you_mean
from rung.core.vocab import ADAPTERS, MODEL_ENGINES, PLAN_ADAPTER_ENGINES

Layer = tuple[str, Mapping[str, Any] | None]


def parse_value(text: str) -> Any:
    """A command-line value read as YAML (1e-4, true, [a, b]); empty is None; unparsable stays a string."""
    import yaml

    if not text.strip():
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def coerce(name: str, hint: Any, value: Any) -> tuple[Any, str | None]:
    """(value, problem): value coerced where YAML gets it wrong, problem naming a wrong type, or None."""
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


def unknown_keys(cls: type, values: Iterable[str], where: str) -> list[str]:
    known = [f.name for f in dataclasses.fields(cls)]
    return [f'{where}: unknown setting "{key}"{did_you_mean(str(key), known)}' for key in values if key not in known]


def merge(cls: type, layers: Sequence[Layer]) -> tuple[dict[str, Any], list[str]]:
    """The layers applied over the dataclass defaults, in order: (values, problems). Nothing raises."""
    hints = typing.get_type_hints(cls)
    merged = dataclasses.asdict(cls())
    problems: list[str] = []
    for where, values in layers:
        if not values:
            continue
        problems += unknown_keys(cls, values, where)
        for key, value in values.items():
            if key in hints:
                name = f"{where} {key}" if where in ("--set", "option") else f"{where}.{key}"
                value, problem = coerce(name, hints[key], value)
                if problem:
                    problems.append(problem)
                merged[key] = value
    adapter = merged.get("adapter")
    if "adapter" in hints and adapter not in ADAPTERS:
        where = next((w for w, values in reversed(layers) if values and "adapter" in values), "settings")
        problems.append(f'{where}: adapter "{adapter}" is not one of {", ".join(ADAPTERS)}'
                        f'{did_you_mean(str(adapter), ADAPTERS)}')
    return merged, problems


def resolve(cls: type, layers: Sequence[Layer]):
    """`cls` built from the layers; every problem at once as one RungError."""
    values, problems = merge(cls, layers)
    if problems:
        raise RungError(problems)
    return cls(**values)


def plan_layers(engine: str, plan: Mapping[str, Any], step: Mapping[str, Any], where: str) -> list[Layer]:
    """The plan-wide layers a step's settings sit on: base_model (unless the step starts from another step's
    model) and the plan's adapter (sft and dpo only)."""
    layers: list[Layer] = []
    if engine in MODEL_ENGINES and plan.get("base_model") is not None and not step.get("from_step"):
        layers.append((f"{where}: base_model", {"model_name_or_path": plan["base_model"]}))
    if engine in PLAN_ADAPTER_ENGINES and plan.get("adapter"):
        layers.append((f"{where}: adapter", {"adapter": plan["adapter"]}))
    return layers


def step_settings(cls: type, step: Mapping[str, Any], ctx: Any):
    """A plan step's settings as `cls`, at run time: the plan layers, the step's settings (already resolved
    and checked by `rung run`), --set on top; a step that starts from another step's model takes that
    step's model_dir."""
    from rung.core.settings import SETTINGS_BY_ENGINE

    engine = next(name for name, settings_cls in SETTINGS_BY_ENGINE.items() if settings_cls is cls)
    step_id = step.get("id")
    values = dict(step.get("settings") or {})
    source = step.get("from_step")
    if source and "model_name_or_path" in values and values["model_name_or_path"] is None:
        values.pop("model_name_or_path")
    if source and not values.get("model_name_or_path") and engine in MODEL_ENGINES:
        values["model_name_or_path"] = ctx.outputs[source]["model_dir"]
    layers = plan_layers(engine, ctx.plan, step, "plan")
    layers += [(f"steps.{step_id}.settings", values), (f"--set {step_id}", ctx.cli_settings)]
    return resolve(cls, layers)
