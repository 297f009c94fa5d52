"""The shared core: errors, file I/O, vocabulary, settings, the plan schema, the step protocol, the model loader."""

if not __name__.startswith("rung."):  # the repository root is the package: `import core` there is a second copy
    raise ImportError(f"import rung.{__name__}, not {__name__}: the repository root is the package rung")
