"""The shared core: errors, file I/O, vocabulary, settings, the plan schema, the step protocol, the model loader."""
