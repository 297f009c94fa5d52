"""rung's advisor: the questionnaire, the rules, the estimator and the plan. Pure Python (click, pyyaml)."""

__version__ = "0.1.0"
