"""`rung run`: prepare a plan, execute its steps, keep their state, write the report."""

if not __name__.startswith("rung."):  # the repository root is the package: `import run` there is a second copy
    raise ImportError(f"import rung.{__name__}, not {__name__}: the repository root is the package rung")
