"""What an engine is: a function that executes one plan step. A Protocol, not a base class.

`rung run` resolves each step's engine name through engines.registry.ENGINES (name -> "module:function"),
imports it only then, and calls it with the step and a StepContext. Engine modules keep heavy imports
inside the function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class StepContext:
    plan: dict[str, Any]          # the whole validated plan
    plan_dir: Path                # the plan file's folder: relative data paths resolve against it
    run_dir: Path                 # this step's output folder (<run root>/<step id>), created by the runner
    resume: bool = False          # continue from this step's last checkpoint when there is one
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # earlier steps' results by step id
    cli_settings: dict[str, Any] = field(default_factory=dict)        # overrides from the command line
    gpus: int = 1                 # --gpus from `rung run`: processes (GPUs) per node; 1 = this process only
    nodes: int = 1                # --nodes: machines in a multi-node run (each runs `rung run` with its rank)
    node_rank: int = 0            # --node-rank: this machine's rank, 0 on the main node
    main_address: str | None = None  # --main-address: the rank-0 machine's address, for nodes > 1
    main_port: int | None = None     # --main-port: its rendezvous port (accelerate's default when None)
    cpu: bool = False                # --cpu: launched processes run on CPU (gloo), for testing the distributed path

    def data_path(self, role: str) -> Path | None:
        """The plan's data path for a role (train, eval, preferences, corpus, documents, queries, ...)."""
        from rung.core.plan import resolve_data_path

        value = (self.plan.get("data") or {}).get(role)
        if value is None:
            return None
        if isinstance(value, list):  # several paths: engines that take folders/files accept the first's parent
            raise TypeError(f"data.{role} is a list; use data_paths()")
        return resolve_data_path(self.plan_dir, value)

    def data_paths(self, role: str) -> list[Path]:
        from rung.core.plan import resolve_data_path

        value = (self.plan.get("data") or {}).get(role)
        if value is None:
            return []
        values = value if isinstance(value, list) else [value]
        return [resolve_data_path(self.plan_dir, v) for v in values]


@dataclass
class StepResult:
    outputs: dict[str, Any] = field(default_factory=dict)  # paths the step wrote; "model_dir" for trainers
    metrics: dict[str, Any] = field(default_factory=dict)  # numbers for report.md
    summary: str = ""                                       # a few lines of markdown for report.md


class Engine(Protocol):
    def __call__(self, step: dict[str, Any], ctx: StepContext) -> StepResult: ...
