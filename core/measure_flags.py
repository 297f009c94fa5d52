"""Options `rung probe`, `rung gate`, `rung generate` and `rung chat` share, declared once in core/settings.py
(GateSettings): the flag's type, range and help come from the settings field, so a plan's gate step and the
command line agree."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import click

from rung.core.options import field_type
from rung.core.settings import GateSettings


def _help(name: str) -> str:
    return next(f for f in dataclasses.fields(GateSettings) if f.name == name).metadata["help"]


def _default(name: str) -> Any:
    return next(f for f in dataclasses.fields(GateSettings) if f.name == name).default


def setting_option(flag: str, name: str, **extra: Any) -> Callable:
    """A click option for GateSettings field `name`: its type and range checked as the settings resolve does
    (NaN, infinity and out-of-range values are refused at parse time), its default and its help."""
    if "type" not in extra:
        extra.update(type=field_type(GateSettings, name), default=_default(name), show_default=True)
    return click.option(flag, name, help=_help(name), **extra)


def endpoint_limits(function: Callable, *, concurrency: bool = True) -> Callable:
    """--timeout and --retries, and --concurrency unless one request is all a command makes."""
    function = setting_option("--retries", "max_retries", metavar="N")(function)
    function = setting_option("--timeout", "timeout_s", metavar="SECONDS")(function)
    return setting_option("--concurrency", "concurrency", metavar="N")(function) if concurrency else function


def metric_inputs(function: Callable) -> Callable:
    """--pattern (metric regex) and --schema (metric json_schema)."""
    function = setting_option("--schema", "schema", type=click.Path(dir_okay=False), default=None,
                              metavar="FILE")(function)
    return setting_option("--pattern", "pattern", type=str, default=None, metavar="REGEX")(function)
