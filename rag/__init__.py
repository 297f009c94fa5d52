"""rung rag."""

if not __name__.startswith("rung."):  # the repository root is the package: `import rag` there is a second copy
    raise ImportError(f"import rung.{__name__}, not {__name__}: the repository root is the package rung")
