"""The `rung` command line: one click group."""
