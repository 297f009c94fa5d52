"""Shared test setup: offline, one torch thread, a CliRunner, and the built-in tiny model."""

from __future__ import annotations

import os

# Offline before anything imports huggingface_hub; one thread because two cores shared with other
# load slow torch 4-40x (docs/development.md, "Measured on 2 cores").
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest
from click.testing import CliRunner


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def rung(runner):
    """Invoke `rung ARGS...` in-process; returns click's Result."""
    from rung.cli.main import cli

    def invoke(*args, input=None):
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def tiny_model_dir():
    """Path of the built-in tiny model (built once per cache, then reused)."""
    from rung.core.models import builtin_tiny_path

    return builtin_tiny_path()
