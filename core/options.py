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


def flag_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("flag")]


def settings_options(cls: type, *, skip: tuple[str, ...] = ()) -> Callable:
    """A decorator adding one click option per flagged field of `cls` (the parameter is the field's name)."""
    hints = typing.get_type_hints(cls)

    def decorate(function: Callable) -> Callable:
        for field in reversed(flag_fields(cls)):
            if field.name in skip:
                continue
            flag, help_text = field.metadata["flag"], field.metadata.get("help", "")
            names = [flag]
            trl_name = "--" + field.name.replace("_", "-")  # TRL's own flag name works too
            if "/" not in flag and trl_name != flag:
                names.append(trl_name)
            if "/" in flag:
                function = click.option(flag, field.name, default=None, help=help_text)(function)
            elif typing.get_origin(hints[field.name]) is None and hints[field.name] is bool:
                function = click.option(*names, field.name, is_flag=True, default=None, help=help_text)(function)
            else:
                function = click.option(*names, field.name, type=_click_type(hints[field.name],
                                                                           field.metadata.get("choices")),
                                        default=None, help=help_text)(function)
        return function

    return decorate


def flag_layer(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The flags the user gave (not None), as a settings layer."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if v is not None and k in names}
