"""The one settings resolve, for `rung train` and `rung run` alike.

    dataclass default < plan base_model < plan adapter < step settings (or --config) < flags < --set

Each layer is (where, {key: value}); `where` names the source in every problem (a file and key, a flag).
Unknown keys fail with a did-you-mean, values are type-checked (YAML 1.1 reads 2e-4 as a string: such
strings become floats) and range-checked against their field's metadata (core/settings.py: minimum, maximum,
gt, lt, choices; floats finite, ints below 2**31), and every problem is reported at once.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Iterable, Mapping, Sequence

from rung.core.checks import unknown_key_problems
from rung.core.errors import RungError, did_you_mean
from rung.core.fileio import short, shown
from rung.core.vocab import MODEL_ENGINES, PLAN_ADAPTER_ENGINES

Layer = tuple[str, Mapping[str, Any] | None]
# Larger than any real count; torch and numpy take 32-bit ints in places (a seed, a sampler's length).
INT_LIMIT = 2**31 - 1


def parse_value(text: str) -> Any:
    """A command-line value read as YAML (1e-4, true, [a, b]); empty is None; unparsable stays a string.
    Aliases that expand past core/fileio.py's budget are refused, as in files."""
    import yaml

    from rung.core.fileio import MAX_YAML_VALUES, count_values

    if not text.strip():
        return None
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return text
    if "*" in text and count_values(value, MAX_YAML_VALUES) > MAX_YAML_VALUES:
        raise RungError(f"{short(text)}: YAML aliases expand to more than {MAX_YAML_VALUES:,} values; refusing it")
    return value


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
            item = (typing.get_args(option) or (Any,))[0]
            if item in (str, int, float) and not all(isinstance(v, item) for v in value):
                bad = next(v for v in value if not isinstance(v, item))
                return value, f"{name}: expected a list of {item.__name__}, got an item {short(bad)}"
            return list(value), None
        if base is dict and isinstance(value, dict):
            return value, None
    if any((typing.get_origin(o) or o) is float for o in options) and isinstance(value, str):
        try:
            return float(value), None
        except ValueError:
            pass
    wanted = " or ".join(getattr(typing.get_origin(o) or o, "__name__", str(o)) for o in options)
    return value, f"{name}: expected {wanted}, got {short(value)}"


def range_text(meta: Mapping[str, Any], integer: bool, ceiling: bool = False) -> str:
    """What a field's range says, in words: "a finite number above 0", "an integer at least 1 (or -1)";
    `ceiling` adds the integer limit every int field has."""
    words = (("gt", "above"), ("minimum", "at least"), ("lt", "below"), ("maximum", "at most"))
    parts = [f"{word} {meta[key]:{',' if isinstance(meta[key], int) else 'g'}}" for key, word in words
             if meta.get(key) is not None]
    if integer and ceiling and meta.get("maximum") is None:
        parts.append(f"at most {INT_LIMIT:,}")
    also = "".join(f" (or {v})" for v in meta.get("also") or ())
    return ("an integer" if integer else "a finite number") + (" " + " and ".join(parts) if parts else "") + also


def range_problem(value: Any, meta: Mapping[str, Any], integer: bool) -> str | None:
    """None when `value` lies in the range the metadata declares, else "must be <range>, got <value>"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value in (meta.get("also") or ()):
        return None
    bad = (not integer and not math.isfinite(value)
           or meta.get("gt") is not None and not value > meta["gt"]
           or meta.get("minimum") is not None and not value >= meta["minimum"]
           or meta.get("lt") is not None and not value < meta["lt"]
           or meta.get("maximum") is not None and not value <= meta["maximum"]
           or integer and meta.get("maximum") is None and abs(value) > INT_LIMIT)
    ceiling = integer and abs(value) > INT_LIMIT
    return f"must be {range_text(meta, integer, ceiling)}, got {short(value)}" if bad else None


def is_integer_hint(hint: Any) -> bool:
    options = [h for h in (typing.get_args(hint) or (hint,)) if h is not type(None)]
    return bool(options) and all(h is int for h in options)


def unknown_keys(cls: type, values: Iterable[str], where: str) -> list[str]:
    return unknown_key_problems(values, [f.name for f in dataclasses.fields(cls)], where, what="setting")


def value_name(where: str, key: str, field: dataclasses.Field) -> str:
    """How a problem names a value: the flag the user typed, `--set key`, or `file: steps[0].settings.key`."""
    if where == "option":  # the flag cli/options.py made for the field: its metadata's, else its own name
        return (field.metadata.get("flag") or "--" + key.replace("_", "-")).split("/")[0]
    return f"{where} {key}" if where == "--set" else f"{where}.{key}"


def merge(cls: type, layers: Sequence[Layer]) -> tuple[dict[str, Any], list[str]]:
    """The layers applied over the dataclass defaults, in order: (values, problems). Nothing raises."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    merged = dataclasses.asdict(cls())
    problems: list[str] = []
    source: dict[str, tuple[str, str]] = {}  # key -> (layer, value name) its value came from
    for where, values in layers:
        if not values:
            continue
        problems += unknown_keys(cls, values, where)
        for key, value in values.items():
            if key in hints:
                name = value_name(where, key, fields[key])
                value, problem = coerce(name, hints[key], value)
                if problem is None:
                    problem = range_problem(value, fields[key].metadata, is_integer_hint(hints[key]))
                    problem = f"{name}: {problem}" if problem else None
                if problem:
                    problems.append(problem)
                merged[key] = value
                source[key] = (where, name)
    for key, field in fields.items():
        choices = field.metadata.get("choices")
        value = merged.get(key)
        if choices and value is not None and value not in choices:
            where, name = source.get(key, ("settings", key))
            what = name if where == "option" else f"{where}: {key}"  # a flag: `--quant "q4_k" is not one of ...`
            problems.append(f'{what} "{shown(value)}" is not one of {", ".join(choices)}'
                            f'{did_you_mean(str(value), choices)}')
    epochs, steps = merged.get("num_train_epochs"), merged.get("max_steps")
    if steps == -1 and isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and epochs <= 0:
        problems.append(f"{source.get('num_train_epochs', ('', 'num_train_epochs'))[1]}: {short(epochs)} epochs and no "
                        "max_steps would train nothing: give epochs above 0, or max_steps")
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
    if source and not values.get("model_name_or_path") and engine in MODEL_ENGINES:
        values["model_name_or_path"] = ctx.outputs[source]["model_dir"]
    layers = plan_layers(engine, ctx.plan, step, "plan")
    layers += [(f"steps.{step_id}.settings", values), (f"--set {step_id}", ctx.cli_settings)]
    return resolve(cls, layers)
