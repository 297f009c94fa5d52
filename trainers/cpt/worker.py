"""CPT's job: what one process of a launched CPT run does (`python -m rung.trainers.cpt --job cpt_job.json`, what
accelerate runs; trainers/cpt/__main__.py hands it to the shared worker, trainers/worker.py).

The job file is the shared one (trainers/jobs.py write_job) with CPT's fields: corpus, general_text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from rung.core.settings import CPTSettings
from rung.trainers import jobs

JOB_FILE = "cpt_job.json"     # what a launched worker reads: settings, corpus, out_dir, resume


def write_job(out_dir: Path, settings: CPTSettings, corpus: Sequence[Path], *, resume: bool,
              general_text: str | os.PathLike | None = None) -> Path:
    return jobs.write_job(out_dir, "cpt", settings, corpus=[str(Path(c).resolve()) for c in corpus],
                            resume=resume, general_text=str(general_text) if general_text else None)


def run_job(job: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """Train one process's share of the job (the worker's entry for pipeline "cpt")."""
    from rung.trainers.cpt.loop import train_cpt

    settings = jobs.job_settings(CPTSettings, job)
    return train_cpt(settings, job["corpus"], job["out_dir"], resume=bool(job.get("resume")) or resume,
                     general_text=job.get("general_text"))

