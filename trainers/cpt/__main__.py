"""`python -m rung.trainers.cpt --job cpt_job.json`: one process of a launched CPT run (the shared worker,
trainers/worker.py, for CPT jobs only)."""

import sys

from rung.trainers.worker import main

sys.exit(main(prog="python -m rung.trainers.cpt", only="cpt"))
