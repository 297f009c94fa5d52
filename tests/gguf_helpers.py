"""Small GGUF files for header checks (tests/core, tests/cli): valid headers, no usable model."""

from __future__ import annotations

from pathlib import Path


def write_header_only_gguf(path: Path, architecture: str = "llama") -> Path:
    """A small valid GGUF with one F32 tensor: enough for header checks, not a loadable model."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("header-only")
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
