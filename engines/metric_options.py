"""What the regex and json_schema metrics need, from `--pattern` and `--schema` (or a plan step's `pattern` and
`schema` settings): checked before any model loads, then handed to engines/metrics.py as its options.

    --metric regex --pattern '^SELECT .*;$'          the answer must contain a match (re.search)
    --metric json_schema --schema schema.json        the answer must parse as JSON valid against the schema

A pattern alone picks regex and a schema alone picks json_schema; either one beside another metric is a
mistake, said so. The schema file is read like every input (a regular file, bounded, UTF-8) and checked as a
JSON Schema; the message names the file, never its content.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rung.core.errors import RungError

MAX_PATTERN_CHARS = 2000
MAX_SCHEMA_BYTES = 4 * 1024 * 1024


def _load_schema(schema: Any) -> tuple[Any, str | None]:
    """(schema, problem): a mapping (or boolean schema) as given, or the JSON in the file it names."""
    from rung.core.fileio import read_text

    if isinstance(schema, (dict, bool)):
        value, where = schema, "schema"
    elif isinstance(schema, (str, Path)) and str(schema).strip():
        where = f"--schema {schema}"
        try:
            text = read_text(Path(str(schema)).expanduser(), what="JSON Schema file", max_bytes=MAX_SCHEMA_BYTES)
        except RungError as error:
            return None, f"--schema: {error.message}"
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as error:
            line = getattr(error, "lineno", None)
            return None, f"{where}: not valid JSON" + (f" (line {line})" if line else "")
    else:
        return None, "--schema: expected a JSON Schema file"
    if not isinstance(value, (dict, bool)):
        return None, f"{where}: a JSON Schema is an object (or true/false), not a {type(value).__name__}"
    try:
        import jsonschema
    except ImportError:
        return None, "the json_schema metric needs jsonschema: pip install jsonschema"
    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as error:
        path = "/".join(str(p) for p in error.absolute_path) or "the top level"
        return None, f"{where}: not a valid JSON Schema (at {path}: {str(error.message)[:120]})"
    except RecursionError:
        return None, f"{where}: nested too deeply"
    return value, None


def _pattern_problem(pattern: Any) -> str | None:
    import re

    from rung.core.fileio import short

    if not isinstance(pattern, str) or not pattern:
        return "--pattern: expected a regular expression, got an empty value"
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"--pattern: {len(pattern):,} characters, over the limit of {MAX_PATTERN_CHARS:,}"
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as error:
        return f"--pattern {short(pattern, 60)}: not a regular expression ({error})"
    return None


def implied_metric(metric: str | None, pattern: Any, schema: Any) -> str | None:
    """The metric a lone --pattern or --schema asks for, else `metric` unchanged."""
    if metric is None and pattern is not None and schema is None:
        return "regex"
    if metric is None and schema is not None and pattern is None:
        return "json_schema"
    return metric


def metric_option_problems(metric: str | None, pattern: Any, schema: Any) -> list[str]:
    """Every problem with --pattern / --schema for `metric` (after implied_metric), all at once."""
    problems = []
    if metric == "regex":
        problems.append(_pattern_problem(pattern) if pattern is not None else
                        '--metric regex needs --pattern REGEX, e.g. --pattern "^SELECT .*;$"')
    elif pattern is not None:
        problems.append(f"--pattern is for --metric regex, not {metric or 'the default metric'}")
    if metric == "json_schema":
        problems.append(_load_schema(schema)[1] if schema is not None else
                        "--metric json_schema needs --schema FILE (a JSON Schema)")
    elif schema is not None:
        problems.append(f"--schema is for --metric json_schema, not {metric or 'the default metric'}")
    return [p for p in problems if p]


def metric_options(metric: str, pattern: Any, schema: Any) -> dict[str, Any]:
    """The options engines/metrics.py's `metric` takes (checked already by metric_option_problems)."""
    if metric == "regex":
        return {"pattern": pattern}
    if metric == "json_schema":
        value, problem = _load_schema(schema)
        if problem:
            raise RungError(problem)
        return {"schema": value}
    return {}
