"""The folder store (rag/backend.py IndexStore): FAISS + JSONL generations in a folder, committed by replacing
manifest.json (the protocol is in rag/layout.py), one writer at a time by flock."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rung.core.errors import RungError
from rung.rag.layout import DamagedIndex, foreign_entries, kill_point, read_manifest, remove_leftovers


class FolderStore:
    def __init__(self, index_dir: str | os.PathLike):
        self.index_dir = Path(index_dir)
        self.location = str(index_dir)
        self.exclude = (self.index_dir,)
        self._old_index = None

    def prepare(self) -> None:
        """Refuse a folder rung did not make, before anything is written in it (.lock included)."""
        index_dir = self.index_dir
        if index_dir.exists() and not index_dir.is_dir():
            raise RungError(f"{index_dir}: is a file; --index needs a folder")
        if index_dir.is_dir() and not os.path.lexists(index_dir / "manifest.json"):
            foreign = foreign_entries(index_dir)
            if foreign:
                shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                raise RungError(f"{index_dir} is a folder with other files ({shown}) and no rung manifest.json; "
                                "give --index a new or empty folder")
        index_dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def writer_lock(self, log):
        """One ingest per index at a time; the kernel drops the lock if the process dies (even SIGKILL)."""
        handle = open(self.index_dir / ".lock", "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RungError(f"{self.index_dir}: another `rung rag index` is writing this index; wait for it "
                                "to finish") from None
            yield
        finally:
            handle.close()

    def committed_manifest(self, rebuild: bool, log) -> dict[str, Any] | None:
        """The manifest, read under the lock, and a crashed ingest's leftovers removed. With rebuild, a damaged
        manifest in a folder holding only rung's own files is replaced (it names nothing usable)."""
        try:
            manifest = read_manifest(self.index_dir)
        except DamagedIndex as error:
            if not rebuild or [n for n in foreign_entries(self.index_dir) if n != "manifest.json"]:
                raise
            log(f"replacing a damaged index: {error.message.split('; rebuild')[0]}")
            manifest = None
        remove_leftovers(self.index_dir, keep=manifest["generation_dir"] if manifest else None)
        return manifest

    def committed_chunks(self, manifest: dict[str, Any]) -> dict[int, dict[str, Any]]:
        from rung.rag.store import RagIndex

        loaded = RagIndex.load(self.index_dir, load_model=False)
        self._old_index = loaded.index
        return loaded.chunks

    def update_sources(self, manifest: dict[str, Any], sources: list[str]) -> None:
        from rung.core.fileio import atomic_write_json

        atomic_write_json(self.index_dir / "manifest.json", {**manifest, "sources": sources})

    def commit(self, manifest: dict[str, Any], chunks: dict[int, dict[str, Any]], added: dict[int, Any],
               removed: set[int], kind: str, rebuild: bool) -> None:
        """Write generation folder manifest["generation"], then manifest.json: the commit point."""
        import faiss
        import numpy as np

        from rung.core.fileio import atomic_write_json
        from rung.rag.store import all_vectors, build_index, write_generation

        old = self._old_index
        dim = manifest["dim"]
        if old is not None and not removed and old.d == dim and _kind(old) == kind and not rebuild:
            index = old   # append: nothing to remove, same type
            if added:
                index.add_with_ids(np.stack(list(added.values())).astype("float32"),
                                   np.asarray(list(added), dtype="int64"))
        else:   # rebuild (HNSW cannot remove vectors; rebuilding a flat index is a memory copy)
            vectors: dict[int, Any] = {}
            if old is not None and not rebuild:
                ids, matrix = all_vectors(old)
                vectors = dict(zip(ids.tolist(), matrix))
            vectors.update(added)
            order = list(chunks)
            matrix = np.stack([vectors[c] for c in order]) if order else np.zeros((0, dim), "float32")
            index = build_index(kind, dim, order, matrix)
        gen_name = write_generation(self.index_dir, manifest["generation"], index, list(chunks.values()))
        kill_point("before_manifest")
        atomic_write_json(self.index_dir / "manifest.json",
                          {**manifest, "generation_dir": gen_name, "faiss_version": faiss.__version__})
        kill_point("after_manifest")
        remove_leftovers(self.index_dir, keep=gen_name)


def _kind(index) -> str:
    import faiss

    return "hnsw" if hasattr(faiss.downcast_index(index.index), "hnsw") else "flat"


def next_generation(manifest: dict[str, Any] | None) -> int:
    """Past both the recorded generation and the folder in use (never the same name as the committed one)."""
    manifest = manifest or {}
    return max(manifest.get("generation", 0), int(manifest.get("generation_dir", "g0")[1:])) + 1
