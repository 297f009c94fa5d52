"""rung's advisor: the questionnaire, the rules, the estimator and the plan. Pure Python (click, pyyaml)."""

if not __name__.startswith("rung."):  # the repository root is the package: `import advisor` there is a second copy
    raise ImportError(f"import rung.{__name__}, not {__name__}: the repository root is the package rung")
