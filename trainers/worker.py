"""One process of a launched run: `python -m rung.trainers.worker --job RUN/<pipeline>_job.json [--resume]`.

`accelerate launch` starts this once per GPU (or CPU process with --cpu); it reads the job the launcher wrote
(trainers/launch.py) and runs the pipeline it names: train_sft, train_dpo or train_cpt (GRPO jobs run through
engines/grpo.py, which hands its reward to this main). Only the main process
prints; a RungError is one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from typing import Any, Callable


def _sft(job: dict[str, Any], resume: bool) -> dict[str, Any]:
    from rung.trainers.sft import run_job

    return run_job(job, resume)


def _dpo(job: dict[str, Any], resume: bool) -> dict[str, Any]:
    from rung.trainers.dpo import run_job

    return run_job(job, resume)


def _cpt(job: dict[str, Any], resume: bool) -> dict[str, Any]:
    from rung.trainers.cpt.loop import run_job

    return run_job(job, resume)


def _grpo(job: dict[str, Any], resume: bool) -> dict[str, Any]:
    from rung.core.errors import RungError

    # the reward is a metric of engines/metrics.py, a layer above this one: engines/grpo.py runs these jobs
    raise RungError("a grpo job runs with python -m rung.engines.grpo --job FILE (it resolves the reward metric)")


ENTRIES: dict[str, Callable[[dict[str, Any], bool], dict[str, Any]]] = {"sft": _sft, "dpo": _dpo, "cpt": _cpt,
                                                                        "grpo": _grpo}


def main(argv: list[str] | None = None, *, prog: str = "python -m rung.trainers.worker",
         only: str | None = None, entries: dict[str, Callable[[dict[str, Any], bool], Any]] | None = None) -> int:
    """Run one process of the job named by --job (what `accelerate launch` runs). `entries` replaces ENTRIES'
    functions by pipeline (engines/grpo.py passes GRPO's, which needs the metric resolved)."""
    import argparse

    from rung.core.errors import RungError
    from rung.trainers.jobs import read_job

    parser = argparse.ArgumentParser(prog=prog, description=main.__doc__)
    parser.add_argument("--job", required=True, help="<pipeline>_job.json written by `rung train ... --gpus N`")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    try:
        job = read_job(args.job)
        if only and job["pipeline"] != only:
            raise RungError(f'{args.job} is a "{job["pipeline"]}" job; run it with python -m rung.trainers.worker')
        {**ENTRIES, **(entries or {})}[job["pipeline"]](job, args.resume)
    except RungError as error:
        print(f"Error: {error.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
