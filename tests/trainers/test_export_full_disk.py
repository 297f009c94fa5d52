"""A full disk during `rung export` is one line naming the folder, and the temporary sibling is gone.

The disk cannot be filled on demand here, so the writer transformers calls is made to fail as safetensors
fails on ENOSPC (its own SafetensorError, not an OSError: "os error 28"). Everything else is real."""

from __future__ import annotations

import pytest

from rung.core.fileio import storage_full


def test_storage_full_reads_library_wrapped_errors():
    import errno

    assert storage_full(OSError(errno.ENOSPC, "No space left on device"))
    assert storage_full(RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"))
    assert not storage_full(RuntimeError("size mismatch for lm_head.weight"))
    assert not storage_full(OSError(errno.EACCES, "Permission denied"))


@pytest.mark.slow
def test_a_full_disk_during_export_names_the_folder_and_leaves_nothing(rung, tmp_path, monkeypatch):
    import safetensors
    import transformers.modeling_utils

    def full(*args, **kwargs):
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    out = tmp_path / "exported"
    result = rung("export", "builtin:tiny", "--out", out)
    assert result.exit_code == 2, result.output
    assert f"cannot write the export to {out}: no space left on the device" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
