"""The schema checks every rung file shares (plan.yaml, rules.yaml, public_runs.yaml, evidence, settings): a key
that is not known, with a did-you-mean, and an id that is missing or given twice. One line per problem, so a
file's problems are all reported at once."""

from __future__ import annotations

from typing import Any, Iterable

from rung.core.errors import did_you_mean
from rung.core.fileio import shown


def unknown_key_problems(keys: Iterable[Any], known: Iterable[str], where: str, what: str = "key") -> list[str]:
    """`where: unknown key "x" (did you mean "y"?)` for each key not in `known`, in order."""
    known = list(known)
    return [f'{where}: unknown {what} "{shown(key)}"{did_you_mean(str(key), known)}' for key in keys
            if key not in known]


def id_problem(value: Any, seen: set[str], where: str, missing: str = 'missing "id"') -> str | None:
    """None for a new id (added to `seen`), else why not: missing (not a non-empty string) or a duplicate."""
    if not isinstance(value, str) or not value:
        return f"{where}: {missing}"
    if value in seen:
        return f'{where}: duplicate id "{shown(value)}"'
    seen.add(value)
    return None


def mapping_problems(value: Any, known: Iterable[str], where: str, expected: str) -> tuple[bool, list[str]]:
    """(is a mapping, problems): `where: expected EXPECTED, got X` for anything else, else its unknown keys."""
    if not isinstance(value, dict):
        return False, [f"{where}: expected {expected}, got {shown(value)}"]
    return True, unknown_key_problems(value, known, where)


def entry_problems(entry: dict, known: Iterable[str], seen: set[str], where: str,
                   missing: str = 'missing "id"') -> list[str]:
    """One entry of a list of mappings with ids (plan steps, rules): its unknown keys, and its id."""
    problem = id_problem(entry.get("id"), seen, where, missing)
    return unknown_key_problems(entry, known, where) + ([problem] if problem else [])
