"""rung rag."""
