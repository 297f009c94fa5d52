"""rung's advisor: the questionnaire, the rules, the estimator and the plan. Pure Python (click, pyyaml)."""
