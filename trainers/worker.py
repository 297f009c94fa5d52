"""One process of a launched run: `python -m rung.trainers.worker --job RUN/<pipeline>_job.json [--resume]`.

`accelerate launch` starts this once per GPU (or CPU process with --cpu); it reads the job the launcher wrote
(trainers/launch.py) and runs the pipeline it names: train_sft, train_dpo or train_cpt. Only the main process
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
    from rung.trainers.cpt.worker import run_job

    return run_job(job, resume)


ENTRIES: dict[str, Callable[[dict[str, Any], bool], dict[str, Any]]] = {"sft": _sft, "dpo": _dpo, "cpt": _cpt}


def main(argv: list[str] | None = None, *, prog: str = "python -m rung.trainers.worker",
         only: str | None = None) -> int:
    """Run one process of the job named by --job (what `accelerate launch` runs)."""
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
        ENTRIES[job["pipeline"]](job, args.resume)
    except RungError as error:
        print(f"Error: {error.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
