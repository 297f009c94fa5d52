"""The one table `rung run` uses: engine name (a plan step's `engine`) -> "module:function".

Every engine follows core/protocol.py: `fn(step: dict, ctx: StepContext) -> StepResult`. Modules are
imported only when a step runs, so `rung run --dry-run` and plan validation stay cheap.
tests/engines/test_run_registry.py checks that this table covers core/vocab.py ENGINES exactly, that every entry
imports, and that every step the planner writes for every route and method names an engine here.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from rung.core import vocab
from rung.core.settings import SETTINGS_BY_ENGINE

ENGINES: dict[str, str] = {
    "prompting": "rung.engines.prompting:run_step",        # system + few-shot prompt, adherence on an eval set
    "rag_index": "rung.engines.rag:index_step",            # chunk, embed and index the documents
    "rag_eval": "rung.engines.rag:eval_step",              # retrieval metrics on the eval queries
    "sft": "rung.engines.sft:run_step",                    # supervised fine-tuning (LoRA / QLoRA / full)
    "dpo": "rung.engines.dpo:run_step",                    # preference tuning, usually after sft
    "grpo": "rung.engines.grpo:run_step",                  # reinforcement with the task's metric as the reward
    "cpt": "rung.engines.cpt:run_step",                    # continued pretraining on a domain corpus
    "bigger_model": "rung.engines.bigger_model:run_step",  # catalog of open models that fit, side-by-side eval
    "gate": "rung.engines.gate:run_step",                  # the trained model against the cheaper rung: SHIP or not
    "export": "rung.engines.export:run_step",              # optional: merged safetensors or GGUF, checked by reloading
    "manual": "rung.engines.manual:run_step",              # a to-do for a person; the report lists it as open
}

# engine -> data roles (core/vocab.py DATA_ROLES) the plan must give it. Every role a plan names must exist.
REQUIRED_DATA = vocab.ENGINE_DATA

# Which engines take the plan's base_model and adapter: core/vocab.py (MODEL_ENGINES, PLAN_ADAPTER_ENGINES).
# Each engine's settings dataclass: core/settings.py (SETTINGS_BY_ENGINE).
MODEL_ENGINES = vocab.MODEL_ENGINES
PLAN_ADAPTER_ENGINES = vocab.PLAN_ADAPTER_ENGINES

# route -> the engines its steps may use (what advisor/planner.py emits). `manual` steps are the to-dos the
# planner adds when data is missing (collect examples, write eval queries, generate pairs, collect instructions).
ROUTE_ENGINES: dict[str, tuple[str, ...]] = {
    "prompting": ("prompting", "manual"),
    "rag": ("rag_index", "rag_eval", "manual"),
    "fine_tuning": ("manual", "sft", "dpo", "grpo", "gate", "export"),
    "continued_pretraining": ("cpt", "sft", "manual", "gate", "export"),
    "bigger_model": ("bigger_model",),
}


def _import(target: str) -> Any:
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def engine_function(name: str) -> Callable:
    """The engine function for an engine name (imports its module now)."""
    return _import(ENGINES[name])


def settings_class(name: str) -> type:
    """The settings dataclass an engine's settings are checked against."""
    return SETTINGS_BY_ENGINE[name]
