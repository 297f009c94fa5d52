"""rung trainers."""
