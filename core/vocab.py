"""The vocabulary every layer shares, defined once: routes, methods, adapters, engines, data roles.

The advisor's rules (advisor/rules.yaml), the plan schema (core/plan.py), the settings (core/settings.py) and
the engine table (engines/registry.py) all name these; a test checks that the engine table covers ENGINES.
"""

from __future__ import annotations

# The ladder, cheapest first.
ROUTES = ("prompting", "rag", "fine_tuning", "continued_pretraining", "bigger_model")
TRAINING_ROUTES = ("fine_tuning", "continued_pretraining")
# grpo: reinforcement with the task's own checker as the reward (RL with verifiable rewards).
METHODS = ("sft", "dpo", "sft_then_dpo", "grpo", "sft_then_grpo")
ADAPTERS = ("lora", "qlora", "full")
# Engines a plan step may name. `manual` is a to-do for a person (say, collect 100 labelled examples):
# `rung run` lists it in the report and moves on.
ENGINES = ("prompting", "rag_index", "rag_eval", "sft", "dpo", "grpo", "cpt", "bigger_model", "gate", "export", "manual")
# engine -> the data roles a plan must give it (the planner fills in defaults; `rung run` checks they exist).
ENGINE_DATA: dict[str, tuple[str, ...]] = {
    "prompting": ("examples",), "rag_index": ("documents",), "rag_eval": ("queries",), "sft": ("train",),
    "dpo": ("preferences",), "grpo": ("train",), "cpt": ("corpus",), "bigger_model": (), "manual": (),
    "gate": (),  # data.eval when the plan has it, else the rows the training step held out
    "export": (),  # the from_step model; its check prompts come from that run's eval rows
}
# Data roles -> what they hold.
DATA_ROLES = {
    "train": "SFT examples (chat messages or prompt/completion), JSONL or JSON; for grpo the prompts (with a reference where the metric needs one)",
    "eval": "held-out examples in the same shape as train",
    "preferences": "preference pairs (prompt/chosen/rejected), JSONL or JSON",
    "corpus": "unlabelled domain text: a folder or files of .txt/.md, or .jsonl with a text field",
    "documents": "documents to index for retrieval: a folder or files",
    "queries": "retrieval eval queries: JSONL of {query, relevant} or BEIR qrels TSV",
    "examples": "input/output examples for few-shot prompting, JSONL",
    "schema": "a JSON Schema the outputs must satisfy",
}
# A model spec that names a model rung builds itself.
BUILTIN_PREFIX = "builtin:"
# Engines whose settings name a model (`model_name_or_path`): the plan's base_model fills it unless the step
# sets one or starts from another step's model (`from_step`).
MODEL_ENGINES = ("prompting", "sft", "dpo", "grpo", "cpt")
# Engines that take the plan's top-level `adapter` unless their settings say otherwise (cpt keeps full).
PLAN_ADAPTER_ENGINES = ("sft", "dpo", "grpo")
# The longest answer rung asks any model for: past it a typo (an extra 0 or three) would generate for hours.
MAX_NEW_TOKENS = 32_768
