"""rung engines."""
