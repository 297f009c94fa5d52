"""Checks probe and gate share, made before any model loads or anything is written (engines/probe.py,
engines/gate.py): the endpoint's settings and key, local model folders, and the --out folder.

    endpoint_options(settings)       what open_chat_model and the judge take from the settings to reach an endpoint
    endpoint_problems(settings)      openai:NAME models: the URL, the limits and the key, refused by variable name
    local_model_problems(settings)   local models: a damaged folder, a missing path, an uncached hub id offline
    out_problems(dir, marker, written)   --out: rung's own, empty or vouched for; no planted link, no FIFO
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rung.core.errors import RungError


def endpoint_options(settings: Any) -> dict[str, Any]:
    """What open_chat_model and the judge take from a probe or gate settings to reach an endpoint."""
    return {"api_base": settings.api_base, "api_key_env": settings.api_key_env, "concurrency": settings.concurrency,
            "timeout_s": settings.timeout_s, "max_retries": settings.max_retries}


def endpoint_problems(settings: Any) -> list[str]:
    """The endpoint settings and the key, checked before anything is written when any model is openai:NAME."""
    from rung.core.endpoint import EndpointSettings, is_endpoint, parse_endpoint_spec

    specs = [getattr(settings, name, None) for name in ("model", "baseline", "candidate", "judge_model")]
    try:
        names = [parse_endpoint_spec(spec) for spec in specs if is_endpoint(spec)]
        if not names:
            return []
        key_env = "OPENAI_API_KEY" if settings.api_key_env is None else settings.api_key_env
        EndpointSettings(model=names[0] or "?", api_key_env=key_env,
                         **{k: v for k, v in endpoint_options(settings).items() if k != "api_key_env"}).api_key()
    except RungError as error:
        return [error.message]
    return []


def local_model_problems(settings: Any) -> list[str]:
    """Local model specs (not openai:NAME) checked as `rung train` checks them: a damaged folder, a missing
    path or an uncached hub id while offline is one line before anything loads."""
    from rung.core.endpoint import is_endpoint
    from rung.core.inputs import check_model_spec

    flags = {"model": "--model", "baseline": "--baseline", "candidate": "--candidate", "judge_model": "--judge-model"}
    problems = []
    for name, flag in flags.items():
        spec = getattr(settings, name, None)
        if spec and not is_endpoint(spec):
            problem = check_model_spec(spec, Path.cwd(), flag)[1]
            if problem:
                problems.append(problem)
    return problems


def out_problems(out_dir: Path | None, marker: str, written: tuple[str, ...], *, resume: bool = False,
                 overwrite: bool = False, hint: str = "pass --overwrite to write into it anyway") -> list[str]:
    """--out checked before anything is written: rung's own (its marker), empty, or vouched for; no planted
    symbolic link among the names rung writes there."""
    from rung.core.inputs import out_dir_problems
    from rung.core.out_guard import link_problems

    if out_dir is None:
        return []
    problems = link_problems(out_dir, written if out_dir.is_dir() and not out_dir.is_symlink() else ())
    if problems:
        return problems
    if out_dir.is_dir():  # what rung reads back there (a resumed probe's answers) is a regular file or absent
        from rung.core.fileio import file_kind

        for name in written:
            path = out_dir / name
            if path.exists() and not path.is_dir() and not path.is_file():
                return [f"--out {out_dir}: {name} is {file_kind(path.stat().st_mode)}, not a regular file"]
    return [p.replace("pass --overwrite to write into it anyway", hint)
            for p in out_dir_problems(out_dir, resume=resume, overwrite=overwrite, marker=marker)]
