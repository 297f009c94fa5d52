"""A user's own task metric: `--metric path/to/file.py:NAME` (probe, gate, the prompting step, plan settings).

NAME is a function `(prediction: str, reference: str, row: dict) -> float` in [0, 1]; `row` is the record
core/rows.py made from the row (system, input, output, history, and `source`: the JSON object as in the file).
It is the user's own code, so it is imported, with importlib from its path: the file's folder is on sys.path
only while the file runs its top level (so it can import modules beside it), never after.

Everything that can go wrong is one line naming the file and the function: a missing file, an import that
fails, a missing name, a value that is not a function; and, per row, an exception inside it or a value that is
not a number in [0, 1] (NaN included), with the row's index.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rung.core.errors import RungError, did_you_mean

SPEC = re.compile(r"(?P<path>.+\.py):(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
_LOADED: dict[tuple[str, str, int], "UserMetric"] = {}


def is_user_metric(spec: Any) -> bool:
    """`FILE.py:NAME`, as opposed to a built-in metric's name."""
    return isinstance(spec, str) and SPEC.fullmatch(spec) is not None


def split_spec(spec: str) -> tuple[Path, str]:
    match = SPEC.fullmatch(spec)
    if match is None:
        raise RungError(f"metric {spec}: expected FILE.py:NAME (a function in your own Python file)")
    return Path(match["path"]).expanduser(), match["name"]


def resolve_spec(spec: str | None, base: Path) -> str | None:
    """A user metric named in a plan: its file relative to the plan's folder (what `rung plan --metric` writes)."""
    if not is_user_metric(spec):
        return spec
    path, name = split_spec(str(spec))
    return spec if path.is_absolute() else f"{(Path(base) / path).as_posix()}:{name}"


def label(spec: str) -> str:
    """The name a user metric goes by in tables and metrics: its function's name."""
    return split_spec(spec)[1]


@dataclass(frozen=True)
class UserMetric:
    spec: str
    path: Path
    name: str
    function: Callable[..., Any]

    def __call__(self, prediction: str, reference: str, row: dict[str, Any], index: int) -> float:
        """The function's score for one row, checked: an exception or a value outside [0, 1] is one line."""
        where = f"metric {self.spec}"
        try:
            value = self.function(prediction, reference, row)
        except Exception as error:  # the user's code: any exception becomes one line naming the row
            reason = str(error).splitlines()[0] if str(error) else ""
            raise RungError(f"{where} raised {type(error).__name__}{': ' + reason if reason else ''} "
                            f"on row {index} (0-based)") from None
        if isinstance(value, bool):
            return float(value)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
            shown = repr(value) if isinstance(value, (int, float)) else f"a {type(value).__name__}"
            raise RungError(f"{where} returned {shown[:60]} on row {index} (0-based); expected a number in [0, 1]")
        return float(value)


def load(spec: str) -> UserMetric:
    """The function `spec` names, imported once per file version; every problem is one RungError line."""
    path, name = split_spec(spec)
    shown = f"metric {spec}"
    if not path.is_file():
        raise RungError(f"{shown}: " + ("a folder, not a Python file" if path.is_dir() else "no such file"))
    resolved = path.resolve()
    key = (str(resolved), name, resolved.stat().st_mtime_ns)
    if key in _LOADED:
        return _LOADED[key]
    module_name = "rung_user_metric_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(module_name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise RungError(f"{shown}: the file cannot be imported as Python")
    module = importlib.util.module_from_spec(module_spec)
    folder = str(resolved.parent)
    sys.modules[module_name] = module  # dataclasses and pickle look their module up here
    sys.path.insert(0, folder)
    bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ left beside the user's file
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:  # a syntax error, a failed import, an exception at its top level
        sys.modules.pop(module_name, None)
        reason = str(error).splitlines()[0] if str(error) else ""
        raise RungError(f"{shown}: importing the file failed: {type(error).__name__}"
                        + (f": {reason}" if reason else "")) from None
    finally:
        sys.dont_write_bytecode = bytecode
        if folder in sys.path:
            sys.path.remove(folder)
    if not hasattr(module, name):
        functions = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise RungError(f"{shown}: the file has no function {name}{did_you_mean(name, functions)}")
    function = getattr(module, name)
    if not callable(function):
        raise RungError(f"{shown}: {name} is not a function (it is of type {type(function).__name__})")
    metric = UserMetric(spec=spec, path=path, name=name, function=function)
    _LOADED[key] = metric
    return metric
