"""One process of a launched CPT run: `python -m rung.trainers.cpt --job cpt_job.json` (what accelerate runs)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_json
from rung.core.settings import CPTSettings, to_dict
from rung.trainers.cpt.loop import train_cpt

JOB_FILE = "cpt_job.json"     # what a launched worker reads: settings, corpus, out_dir, resume


def write_job(out_dir: Path, settings: CPTSettings, corpus: Sequence[Path], *, resume: bool,
              general_text: str | os.PathLike | None = None) -> Path:
    path = Path(out_dir) / JOB_FILE
    atomic_write_json(path, {"settings": to_dict(settings), "corpus": [str(Path(c).resolve()) for c in corpus],
                             "out_dir": str(Path(out_dir).resolve()), "resume": resume,
                             "general_text": str(general_text) if general_text else None})
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m rung.trainers.cpt --job cpt_job.json`: one process of a (possibly launched) CPT run."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rung.trainers.cpt", description=main.__doc__)
    parser.add_argument("--job", required=True, help="cpt_job.json written by `rung train cpt`")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    job = json.loads(Path(args.job).read_text())
    fields = {f.name for f in dataclasses.fields(CPTSettings)}
    settings = CPTSettings(**{k: v for k, v in job["settings"].items() if k in fields})
    try:
        train_cpt(settings, job["corpus"], job["out_dir"], resume=job["resume"] or args.resume,
                  general_text=job.get("general_text"))
    except RungError as error:
        print(f"Error: {error.message}", file=sys.stderr)
        return 2
    return 0
