"""The index's vectors and chunks: FAISS (its own format, via serialize_index) and JSONL, no pickle anywhere.

The folder layout, the manifest and the commit protocol that keeps a crash (even SIGKILL) from ever leaving the
vectors and the chunk store out of step are in rag/layout.py: a new generation folder is written, then the
manifest that names it replaces the old one. (The failure mode avoided: a LangChain FAISS store whose `add`
died halfway.)
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rung.core.errors import RungError
from rung.rag.layout import (FORMAT, FORMAT_VERSION, INDEX_TYPES, DamagedIndex, fsync_dir, generation_path,
                             kill_point, read_manifest, rebuild_hint)

__all__ = ["FORMAT", "FORMAT_VERSION", "INDEX_TYPES", "read_manifest", "RagIndex", "Hit", "build_index",
           "write_generation", "check_model", "chunk_id", "resolve_index_type", "all_vectors"]
# index.faiss and chunks.jsonl are read whole; these limits only stop a file swapped for something huge.
MAX_INDEX_BYTES = 64 * 1024**3
MAX_CHUNKS_BYTES = 16 * 1024**3
# Exact search below this many chunks, HNSW at or above it (index_type "auto"). Measured in
# benchmarks/bench_rag.py on 2 cores (BENCHMARKS.md): exact IndexFlatIP costs ~0.2 ms per query at 10k chunks,
# ~5 ms at 100k; the MiniLM query embedding alone costs ~9 ms. Below 50k chunks exact search adds at most ~2.5 ms
# to a query, loses nothing, and updates in place; above, HNSW keeps search under a millisecond (but must be
# rebuilt when files change, ~11 s per 100k vectors).
HNSW_THRESHOLD = 50_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
# efSearch: FAISS's default 16 found 79% of the exact top-10 at 100k chunks, 128 found 98.4%, 256 found 99.4% for
# 0.3 ms a query (BENCHMARKS.md): next to ~9 ms for embedding the query, accuracy is the cheaper side.
HNSW_EF_SEARCH = 256


def chunk_id(source: str, text_sha256: str, ordinal: int) -> int:
    """Deterministic positive int64 from the source path and the chunk's content hash (ordinal separates
    identical chunks within one file). Re-ingesting the same text gives the same id, so never a duplicate."""
    import hashlib

    digest = hashlib.sha256(f"{source}\0{text_sha256}\0{ordinal}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def resolve_index_type(setting: str, n: int) -> str:
    if setting == "auto":
        return "hnsw" if n >= HNSW_THRESHOLD else "flat"
    return setting


def build_index(kind: str, dim: int, ids, vectors, *, ef_search: int = HNSW_EF_SEARCH):
    """IndexIDMap2 over IndexFlatIP (exact) or IndexHNSWFlat (inner product); vectors are unit length."""
    import faiss
    import numpy as np

    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        inner.hnsw.efSearch = ef_search
    else:
        inner = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(inner)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype="float32"), np.asarray(ids, dtype="int64"))
    return index


def all_vectors(index):
    """(ids, vectors) of everything in an IndexIDMap2 — flat and HNSW both keep the raw vectors."""
    import faiss
    import numpy as np

    n = index.ntotal
    ids = faiss.vector_to_array(index.id_map).astype("int64")
    inner = faiss.downcast_index(index.index)
    vectors = inner.reconstruct_n(0, n) if n else np.zeros((0, index.d), dtype="float32")
    return ids, vectors


def set_ef_search(index, ef: int) -> None:
    import faiss

    inner = faiss.downcast_index(index.index)
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = ef


@dataclass
class Hit:
    rank: int
    score: float          # cosine similarity (inner product of unit vectors)
    chunk: dict[str, Any]

    @property
    def where(self) -> str:
        c = self.chunk
        return f"{c['source']}:{c['line']}" if c.get("page") is None else f"{c['source']} p.{c['page']}"

    def as_dict(self) -> dict[str, Any]:
        c = self.chunk
        return {"rank": self.rank, "score": round(self.score, 6), "source": c["source"], "line": c["line"],
                "page": c.get("page"), "heading": c.get("heading", ""), "doc": c.get("doc", c["source"]),
                "id": c["id"], "text": c["text"]}


# --------------------------------------------------------------------------------------------- writing

def check_model(manifest: dict[str, Any], index_dir: Path, requested: str | None, dim: int | None = None) -> None:
    """Refuse an index built with another model or dimension, saying which and how to rebuild."""
    from rung.rag.embed import model_name

    built = manifest["model"]
    sources = " ".join(manifest.get("sources") or ["SOURCES"])
    if requested is not None and model_name(requested) != built:
        raise RungError(
            f"{index_dir} was built with embedding model {built} ({manifest['dim']} dims), not "
            f"{model_name(requested)}: vectors from two models cannot be compared. Use --model {built}, or rebuild "
            f"the index for the new model: rung rag index {sources} --index {index_dir} "
            f"--model {requested} --rebuild")
    if dim is not None and dim != manifest["dim"]:
        raise RungError(
            f"{index_dir} holds {manifest['dim']}-dimensional vectors but model {built} now gives {dim} "
            f"dimensions (the model changed on disk?). Rebuild: rung rag index {sources} --index {index_dir} --rebuild")


def write_generation(index_dir: Path, generation: int, index, chunks: list[dict[str, Any]]) -> str:
    """Write index.faiss and chunks.jsonl into a new generation folder; returns its name. Not yet current."""
    import faiss

    from rung.core.fileio import atomic_write_bytes

    name = f"g{generation:06d}"
    folder = Path(index_dir) / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    kill_point("generation_dir")
    atomic_write_bytes(folder / "index.faiss", faiss.serialize_index(index).tobytes())
    kill_point("index_written")
    lines = [json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in chunks]
    atomic_write_bytes(folder / "chunks.jsonl", ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
    fsync_dir(folder)
    fsync_dir(Path(index_dir))
    return name


# --------------------------------------------------------------------------------------------- loading

def _read_whole(path: Path, what: str, limit: int) -> bytes:
    """A regular file's bytes: refused when it is a FIFO, a device or over `limit`. The read is sized to the
    file (a read sized to a large limit would allocate the limit up front)."""
    from rung.core.fileio import check_regular_file, read_bytes

    size = os.stat(check_regular_file(path, what=what, max_bytes=limit)).st_size
    return read_bytes(path, what=what, max_bytes=min(limit, size + 1024 * 1024))


def _chunk_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    for key, kind in (("id", int), ("source", str), ("text", str), ("line", int)):
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{key!r} is missing or not {'a whole number' if kind is int else 'text'}"
    return None


def parse_chunks(path: Path, text: str, hint: str) -> dict[int, dict[str, Any]]:
    """chunks.jsonl -> {id: record}; the first bad line (a truncated file ends in one) is a DamagedIndex."""
    chunks: dict[int, dict[str, Any]] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            problem = "not a complete JSON line (the file is truncated or damaged)"
        else:
            problem = _chunk_problem(record) or (f"chunk id {record['id']} appears twice"
                                                 if record["id"] in chunks else None)
        if problem:
            raise DamagedIndex(f"{path}:{lineno}: {problem}; {hint}")
        chunks[record["id"]] = record
    return chunks


def read_generation(index_dir: Path, manifest: dict[str, Any]):
    """(faiss index, {id: chunk}) of the manifest's generation, checked against each other and the manifest."""
    import faiss
    import numpy as np

    hint = rebuild_hint(index_dir)
    gen = generation_path(index_dir, manifest)
    try:
        data = _read_whole(gen / "index.faiss", "index file", MAX_INDEX_BYTES)
        raw = _read_whole(gen / "chunks.jsonl", "chunk store", MAX_CHUNKS_BYTES)
        text = raw.decode("utf-8")
    except RungError as error:
        raise DamagedIndex(f"{error.message}; {hint}") from None
    except UnicodeDecodeError as error:
        raise DamagedIndex(f"{gen / 'chunks.jsonl'}: not UTF-8 at byte {error.start} (damaged); {hint}") from None
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype="uint8"))
    except (RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[-1].split(": ", 1)[-1][:160] if str(error).strip() else "unknown"
        raise DamagedIndex(f"{gen / 'index.faiss'}: not a readable FAISS index ({reason}); {hint}") from None
    del data, raw
    if not hasattr(index, "id_map"):
        raise DamagedIndex(f"{gen / 'index.faiss'}: not an index rung wrote (no id map); {hint}")
    chunks = parse_chunks(gen / "chunks.jsonl", text, hint)
    kind = "hnsw" if hasattr(faiss.downcast_index(index.index), "hnsw") else "flat"
    counted = manifest["counts"]["chunks"]
    if index.ntotal != len(chunks) or index.d != manifest["dim"] or len(chunks) != counted:
        raise DamagedIndex(f"{index_dir}: index.faiss has {index.ntotal} vectors of {index.d} dims, chunks.jsonl "
                           f"{len(chunks)} chunks, but the manifest says {counted} chunks of {manifest['dim']} dims; "
                           f"{hint}")
    if set(faiss.vector_to_array(index.id_map).tolist()) != set(chunks):
        raise DamagedIndex(f"{index_dir}: index.faiss and chunks.jsonl hold different chunk ids; {hint}")
    if kind != manifest["index_type"]:
        raise DamagedIndex(f"{index_dir}: index.faiss holds a {kind} index but the manifest says "
                           f"{manifest['index_type']}; {hint}")
    return index, chunks


@dataclass
class RagIndex:
    """A loaded index: search by vector or by text."""

    index_dir: Path
    manifest: dict[str, Any]
    index: Any
    chunks: dict[int, dict[str, Any]]
    model: Any = field(default=None, repr=False)
    retrieval: Any = None          # core/settings.py RetrievalSettings; None: dense
    keywords: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, index_dir: str | os.PathLike, *, model: str | None = None, load_model: bool = True) -> "RagIndex":
        """Open DIR. `model` (an id or path) must match the one the index was built with; None = that one."""
        index_dir = Path(index_dir)
        if not index_dir.exists():
            raise RungError(f"{index_dir}: no such index; build one with `rung rag index SOURCES --index {index_dir}`")
        if not index_dir.is_dir():
            raise RungError(f"{index_dir}: is a file, expected an index folder made by `rung rag index`")
        for attempt in range(3):
            manifest = read_manifest(index_dir)
            if manifest is None:
                raise RungError(f"{index_dir} is not a rung index (no manifest.json); build one with "
                                f"`rung rag index SOURCES --index {index_dir}`")
            check_model(manifest, index_dir, model)
            try:
                index, chunks = read_generation(index_dir, manifest)
                break
            except DamagedIndex:
                # An ingest may have committed a new generation and removed this one since we read the manifest.
                now = read_manifest(index_dir)
                if attempt == 2 or now is None or now["generation_dir"] == manifest["generation_dir"]:
                    raise
        set_ef_search(index, manifest.get("hnsw", {}).get("efSearch", HNSW_EF_SEARCH))
        loaded = cls(index_dir, manifest, index, chunks)
        if load_model:
            from rung.rag.embed import dimension, load_embedder

            loaded.model = load_embedder(manifest["model"])
            check_model(manifest, index_dir, None, dimension(loaded.model))
        return loaded

    def __len__(self) -> int:
        return len(self.chunks)

    def search_vector(self, vector, k: int) -> list[Hit]:
        k = max(0, min(int(k), len(self.chunks)))
        if k == 0:
            return []
        scores, ids = self.index.search(vector, k)
        hits = []
        for score, cid in zip(scores[0], ids[0]):
            if cid < 0:
                continue
            hits.append(Hit(rank=len(hits) + 1, score=float(score), chunk=self.chunks[int(cid)]))
        return hits

    def documents(self) -> set[str]:
        return {c.get("doc", c["source"]) for c in self.chunks.values()}

    def keyword_search(self, query: str, k: int) -> list[Hit]:
        """Top-k chunks by BM25 (rag/hybrid.py KeywordIndex, built on first use)."""
        from rung.rag.hybrid import KeywordIndex

        if self.keywords is None:
            self.keywords = KeywordIndex(self.chunks)
        return [Hit(rank=i, score=score, chunk=self.chunks[cid])
                for i, (cid, score) in enumerate(self.keywords.search(query, k), start=1)]

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """Top-k chunks: dense, or hybrid when `retrieval` (core/settings.py RetrievalSettings) says so."""
        from rung.rag.hybrid import search

        return search(self, query, k)

    def search_documents(self, query: str, k: int = 10) -> list[tuple[str, float, Hit]]:
        """Chunks collapsed to their document (best rank wins): up to k (doc, score, best hit)."""
        from rung.rag.hybrid import search_documents

        return search_documents(self, query, k)
