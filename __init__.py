"""rung: pick the right rung of the LLM ladder, write the plan, run it."""

__version__ = "0.1.0"
