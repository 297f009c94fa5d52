"""The index directory: FAISS vectors, chunk records, and a manifest — no pickle anywhere.

Layout of DIR:

    manifest.json            what the index is (model, dim, metric, chunker, counts, file hashes) and which
                             generation is current. Written last, atomically: it is the commit point.
    g000007/index.faiss      faiss.write_index format (via serialize_index + atomic write), IndexIDMap2
    g000007/chunks.jsonl     one chunk per line: id, source, doc, line, page, heading, tokens, text
    .lock                    held (flock) by the one ingest allowed at a time

An ingest writes a new generation folder, fsyncs it, then replaces manifest.json, then deletes the old
generation. A crash (even SIGKILL) at any point leaves the old manifest pointing at the old, complete
generation; the next ingest deletes the orphaned folder and starts again. So the vectors and the chunk store
can never drift apart — the failure mode of a LangChain FAISS store whose `add` died halfway.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rung.core.errors import RungError

FORMAT = "rung-rag-index"
FORMAT_VERSION = 1
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
INDEX_TYPES = ("auto", "flat", "hnsw")
_GEN = re.compile(r"^g(\d{6,})$")


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


# --------------------------------------------------------------------------------------------- manifest

def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    """The manifest, or None when DIR has none. Raises RungError for a folder that is not a rung index."""
    index_dir = Path(index_dir)
    path = index_dir / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RungError(f"{path}: unreadable manifest ({error}); rebuild the index with "
                        f"`rung rag index SOURCES --index {index_dir} --rebuild`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RungError(f"{index_dir} is not a rung index (manifest.json has no format: {FORMAT}); "
                        "point --index at a folder made by `rung rag index`, or at a new folder")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise RungError(f"{index_dir} was written by a newer rung (index format {manifest['format_version']}); "
                        "upgrade rung or rebuild the index")
    return manifest


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


def generation_dirs(index_dir: Path) -> list[Path]:
    return sorted(p for p in Path(index_dir).iterdir() if p.is_dir() and _GEN.match(p.name))


def remove_stale_generations(index_dir: Path, keep: str | None) -> int:
    removed = 0
    for path in generation_dirs(index_dir):
        if path.name != keep:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_generation(index_dir: Path, generation: int, index, chunks: list[dict[str, Any]]) -> str:
    """Write index.faiss and chunks.jsonl into a new generation folder; returns its name. Not yet current."""
    import faiss

    from rung.core.fileio import atomic_write_bytes

    name = f"g{generation:06d}"
    folder = Path(index_dir) / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    atomic_write_bytes(folder / "index.faiss", faiss.serialize_index(index).tobytes())
    lines = [json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in chunks]
    atomic_write_bytes(folder / "chunks.jsonl", ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
    fsync_dir(folder)
    fsync_dir(Path(index_dir))
    return name


# --------------------------------------------------------------------------------------------- loading

@dataclass
class RagIndex:
    """A loaded index: search by vector or by text."""

    index_dir: Path
    manifest: dict[str, Any]
    index: Any
    chunks: dict[int, dict[str, Any]]
    model: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, index_dir: str | os.PathLike, *, model: str | None = None, load_model: bool = True) -> "RagIndex":
        """Open DIR. `model` (an id or path) must match the one the index was built with; None = that one."""
        index_dir = Path(index_dir)
        if not index_dir.exists():
            raise RungError(f"{index_dir}: no such index; build one with `rung rag index SOURCES --index {index_dir}`")
        if not index_dir.is_dir():
            raise RungError(f"{index_dir}: is a file, expected an index folder made by `rung rag index`")
        manifest = read_manifest(index_dir)
        if manifest is None:
            raise RungError(f"{index_dir} is not a rung index (no manifest.json); build one with "
                            f"`rung rag index SOURCES --index {index_dir}`")
        check_model(manifest, index_dir, model)
        import faiss

        gen = index_dir / manifest["generation_dir"]
        try:
            index = faiss.read_index(str(gen / "index.faiss"))
            text = (gen / "chunks.jsonl").read_text(encoding="utf-8")
        except (OSError, RuntimeError) as error:
            raise RungError(f"{index_dir}: index files missing or damaged ({str(error).splitlines()[0]}); rebuild "
                            f"with `rung rag index SOURCES --index {index_dir} --rebuild`") from None
        chunks = {}
        for line in text.splitlines():
            if line:
                record = json.loads(line)
                chunks[int(record["id"])] = record
        if index.ntotal != len(chunks) or index.d != manifest["dim"]:
            raise RungError(f"{index_dir}: index.faiss has {index.ntotal} vectors of {index.d} dims but the manifest "
                            f"says {len(chunks)} chunks of {manifest['dim']}; rebuild with --rebuild")
        set_ef_search(index, int(manifest.get("hnsw", {}).get("efSearch", HNSW_EF_SEARCH)))
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

    def search(self, query: str, k: int = 5) -> list[Hit]:
        from rung.rag.embed import embed_query

        if self.model is None:
            raise RuntimeError("RagIndex was loaded with load_model=False")
        return self.search_vector(embed_query(self.model, query), k)

    def search_documents(self, query: str, k: int = 10) -> list[tuple[str, float, Hit]]:
        """Chunks collapsed to their document (best rank wins): up to k (doc, score, best hit)."""
        from rung.rag.embed import embed_query

        vector = embed_query(self.model, query)
        depth = min(len(self.chunks), max(50, k * 5))
        while True:
            seen: dict[str, Hit] = {}
            for hit in self.search_vector(vector, depth):
                doc = hit.chunk.get("doc", hit.chunk["source"])
                seen.setdefault(doc, hit)
            if len(seen) >= k or depth >= len(self.chunks):
                break
            depth = min(len(self.chunks), depth * 4)
        return [(doc, hit.score, hit) for doc, hit in list(seen.items())[:k]]
