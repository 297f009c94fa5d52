"""`python -m rung.trainers.cpt --job cpt_job.json`: one process of a launched CPT run."""

import sys

from rung.trainers.cpt.worker import main

sys.exit(main())
