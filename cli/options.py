"""Command-line options generated from a settings dataclass: one definition for flag, type and help.

A field whose metadata names a `flag` (core/settings.py) becomes a click option with the field's help text,
under that name and under TRL's own (`--batch-size` and `--per-device-train-batch-size`); "--on/--off" flags
become boolean switches. Every option defaults to None, so only what the user typed
becomes a layer of the settings resolve (core/resolve.py); the rest stays with the plan or the default, and
ranges are checked there, all problems at once. Options outside the settings (generation, estimates) use
`Checked`, a click type applying the same range rules (finite floats, minimum/maximum/gt/lt) at parse time.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable

import click



def _is_structured(hint: Any) -> bool:
    """A list or dict field (or one that may be either), whose flag value is YAML."""
    return any((typing.get_origin(h) or h) in (list, dict) for h in (typing.get_args(hint) or (hint,)))


def _click_type(hint: Any, choices: tuple[str, ...] | None) -> Any:
    if choices:
        return click.Choice(list(choices))
    options = [h for h in typing.get_args(hint) if h is not type(None)] or [hint]
    base = typing.get_origin(options[0]) or options[0]
    return {int: int, float: float, str: str}.get(base, str)


class _Checked:
    """convert() for Checked: click's number parsing, then the settings' range rule (core/resolve.py)."""

    meta: dict[str, Any]
    integer: bool

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = (click.INT if self.integer else click.FLOAT).convert(value, param, ctx)
        from rung.core.resolve import range_problem  # here: `rung advise` imports this module, not the resolve

        problem = range_problem(number, self.meta, self.integer)
        if problem:
            self.fail(problem, param, ctx)
        return number


class _CheckedInt(_Checked, click.IntRange):
    pass


class _CheckedFloat(_Checked, click.FloatRange):
    pass


def Checked(base: type, *, minimum: float | None = None, maximum: float | None = None, gt: float | None = None,
            lt: float | None = None) -> click.ParamType:
    """A click int or float type with a range, checked like a settings field: NaN and infinity are refused
    (click's FloatRange lets them through), and so is an int past 2**31 unless `maximum` says otherwise.
    --help shows the range as click's own ranges do ([x>=1])."""
    low, high = (gt if gt is not None else minimum), (lt if lt is not None else maximum)
    kind = _CheckedInt if base is int else _CheckedFloat
    checked = kind(min=low, max=high, min_open=gt is not None, max_open=lt is not None)
    checked.meta = {"minimum": minimum, "maximum": maximum, "gt": gt, "lt": lt}
    checked.integer = base is int
    return checked


def field_type(cls: type, name: str) -> click.ParamType:
    """A click type checking what settings field `name` of `cls` declares (for options outside the resolve)."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    options = [h for h in typing.get_args(typing.get_type_hints(cls)[name]) if h is not type(None)]
    base = int if (options or [typing.get_type_hints(cls)[name]])[0] is int else float
    return Checked(base, **{k: field.metadata.get(k) for k in ("minimum", "maximum", "gt", "lt")})


def flag_name(field: dataclasses.Field, hint: Any) -> str:
    """A field's flag: the one its metadata names (`--batch-size`), else its own name (`--warmup-ratio`); a bool that
    is on or unset by default gets both switches (`--packing/--no-packing`)."""
    if field.metadata.get("flag"):
        return field.metadata["flag"]
    name = "--" + field.name.replace("_", "-")
    is_bool = bool in ((hint,) + typing.get_args(hint))
    return f"{name}/--no-{name[2:]}" if is_bool and field.default is not False else name


class YamlValue(click.ParamType):
    """A list or mapping on the command line, read as YAML (core/resolve.py parse_value): --families '[Qwen2.5]'."""

    name = "yaml"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from rung.core.errors import RungError
        from rung.core.resolve import parse_value

        try:
            return parse_value(value) if isinstance(value, str) else value
        except RungError as error:  # an alias bomb: refused, and named by its flag
            self.fail(error.message, param, ctx)


def _option(field: dataclasses.Field, hint: Any, *, values: bool, required: bool, checked: bool) -> Callable:
    """One click option for a settings field. values=False (the training commands): default None, so only what
    the user typed becomes a resolve layer, ranges checked there with every other problem. values=True (every
    other command): the field's default, shown in --help, and (checked) its range refused at parse time
    (Checked); unchecked, the range is checked by the resolve, with the command's other problems."""
    flag, help_text = flag_name(field, hint), field.metadata.get("help", "")
    names = [flag]
    trl_name = "--" + field.name.replace("_", "-")  # the field's own name works too (TRL's flag for TRL fields)
    if "/" not in flag and trl_name != flag:
        names.append(trl_name)
    default = field.default if values and field.default is not dataclasses.MISSING else None
    extra: dict[str, Any] = {"default": default, "help": help_text, "required": required}
    if field.metadata.get("metavar"):
        extra["metavar"] = field.metadata["metavar"]
    elif field.metadata.get("choices") and not checked:  # the command checks them; --help still lists them
        extra["metavar"] = "|".join(field.metadata["choices"])
    if values and default not in (None, False, ""):
        extra["show_default"] = True
    is_bool = typing.get_origin(hint) is None and hint is bool
    if "/" in flag:
        return click.option(flag, field.name, **extra)
    if is_bool:
        return click.option(*names, field.name, is_flag=True, **extra)
    choices = field.metadata.get("choices") if checked else None  # unchecked: the resolve (or the command) says
    click_type = _click_type(hint, choices)
    if not choices and _is_structured(hint):
        click_type = YamlValue()
    if values and checked and click_type in (int, float):
        click_type = Checked(click_type, **{k: field.metadata.get(k) for k in ("minimum", "maximum", "gt", "lt")})
    return click.option(*names, field.name, type=click_type, **extra)


def settings_options(cls: type, *, skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None,
                     required: tuple[str, ...] = (), values: bool = False, later: tuple[str, ...] = ()) -> Callable:
    """A decorator adding one click option per field of `cls` (the parameter is the field's name): the one
    declaration of every knob is its settings field (core/settings.py). `values`: see _option; `later`: fields
    whose range the resolve checks (with the command's other problems) rather than the parser."""
    hints = typing.get_type_hints(cls)

    def decorate(function: Callable) -> Callable:
        for field in reversed(dataclasses.fields(cls)):
            if field.name in skip or (only is not None and field.name not in only):
                continue
            function = _option(field, hints[field.name], values=values, required=field.name in required,
                               checked=field.name not in later)(function)
        return function

    return decorate


def flag_layer(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The flags the user gave (not None), as a settings layer."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if v is not None and k in names}


def settings_from_flags(cls: type, flags: dict[str, Any]):
    """`cls` from a command's flags through the one resolve (core/resolve.py), as a plan step's settings resolve:
    the same types, ranges and choices, every problem at once. The flags are popped from `flags`; what stays
    there is the command's own (paths, --out, --json)."""
    from rung.core.resolve import resolve

    names = {f.name for f in dataclasses.fields(cls)}
    layer = {name: flags.pop(name) for name in list(flags) if name in names}
    return resolve(cls, [("option", {k: v for k, v in layer.items() if v is not None})])


def settings_and_problems(cls: type, flags: dict[str, Any]) -> tuple[Any, list[str]]:
    """As settings_from_flags, but the problems are returned, not raised, so that a command reports them with its
    own (every problem at once); a value out of range is kept as given (the command stops before using it)."""
    from rung.core.resolve import merge

    names = {f.name for f in dataclasses.fields(cls)}
    layer = {name: flags.pop(name) for name in list(flags) if name in names}
    values, problems = merge(cls, [("option", {k: v for k, v in layer.items() if v is not None})])
    return cls(**values), problems
