"""rung engines."""

if not __name__.startswith("rung."):  # the repository root is the package: `import engines` there is a second copy
    raise ImportError(f"import rung.{__name__}, not {__name__}: the repository root is the package rung")
