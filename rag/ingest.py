"""Incremental, idempotent ingest: hash files, re-chunk only what changed, re-embed only text never seen.

    unchanged file (same sha256, same chunker settings) -> nothing read past the hash, nothing embedded
    changed file   -> re-chunked; chunks whose text is unchanged keep their vectors (ids are content hashes),
                      only new text is embedded; its old chunks that are gone are removed
    deleted file   -> its chunks are removed
    nothing changed -> no model load, no write: a warm re-ingest costs a walk and a hash of each file

Where the index lives is the store's business (rag/backend.py): a folder (rag/folder_store.py; its commit
protocol is in rag/layout.py: under .lock, read the manifest, remove leftovers, write a new generation folder,
then manifest.json, then delete the old one) or PostgreSQL (rag/pg_store.py: under an advisory lock, one
transaction per generation). This module decides what changed and what to embed; the store commits it whole.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rung.core.errors import RungError
from rung.rag import loaders, store
from rung.rag.chunking import ChunkerSettings
from rung.rag.backend import IndexStore, open_store
from rung.rag.layout import FORMAT, FORMAT_VERSION, INDEX_TYPES, kill_point
from rung.rag.store import check_model, resolve_index_type


@dataclass
class IngestSummary:
    files_seen: int = 0
    files_indexed: int = 0      # files in the index after this run
    files_changed: int = 0      # new or changed files read and chunked this run
    files_unchanged: int = 0
    files_removed: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    kept: int = 0
    embedded: int = 0
    chunks: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    index_type: str = ""
    wrote: bool = False
    bad_lines: dict[str, dict] = field(default_factory=dict)  # JSONL source -> {"count", "first": [[line, why]]}

    def bad_line_notes(self) -> list[str]:
        """One line per JSONL file with records left out: how many, and the first few with what is wrong."""
        return [f"{source}: {b['count']} bad line{'s' if b['count'] != 1 else ''} left out ("
                + "; ".join(f"line {n}: {why}" for n, why in b["first"]) + (", ..." if b["count"] > len(b["first"]) else "")
                + ")" for source, b in sorted(self.bad_lines.items())]

    def line(self) -> str:
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{n} {r}" for r, n in self.skipped.most_common())
        rate = f" at {self.embedded / self.embed_seconds:.1f} chunks/s" if self.embedded and self.embed_seconds else ""
        bad = sum(b["count"] for b in self.bad_lines.values())
        files = len(self.bad_lines)
        bad_text = f", {bad} bad JSONL line{'s' * (bad != 1)} in {files} file{'s' * (files != 1)}" if bad else ""
        return (f"{self.files_seen} files: {self.files_changed} read, {self.files_unchanged} unchanged, "
                f"{self.files_removed} removed, {skipped} skipped{f' ({reasons})' if skipped else ''}{bad_text} | "
                f"chunks: {self.added} added, {self.removed} removed, {self.kept} kept, {self.chunks} in index "
                f"({self.index_type}) | embedded {self.embedded}{rate} | {self.seconds:.1f}s")

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files_seen, "files_indexed": self.files_indexed, "files_read": self.files_changed,
                "files_unchanged": self.files_unchanged, "files_removed": self.files_removed,
                "skipped": dict(self.skipped), "skipped_files": [{"file": f, "reason": r} for f, r in self.skipped_files],
                "chunks_added": self.added, "chunks_removed": self.removed, "chunks_kept": self.kept,
                "chunks_embedded": self.embedded, "chunks": self.chunks, "index_type": self.index_type,
                "bad_lines": self.bad_lines, "seconds": round(self.seconds, 3), "wrote": self.wrote}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_options(index_type: str | None, batch_size: Any) -> None:
    problems = []
    if index_type is not None and index_type not in INDEX_TYPES:
        problems.append(f"index type {index_type!r} is not one of {', '.join(INDEX_TYPES)}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        problems.append(f"batch size must be a whole number, 1 or more (got {batch_size!r})")
    if problems:
        raise RungError(problems)


def _record_bad_lines(summary: IngestSummary, files_meta: dict[str, dict]) -> None:
    summary.bad_lines = {s: meta["bad_lines"] for s, meta in sorted(files_meta.items()) if meta.get("bad_lines")}


@dataclass
class Sync:
    """What one ingest decided under the writer lock, from the committed manifest: the settings in force, the
    files found and which of them changed."""

    target: IndexStore
    manifest: dict | None          # the committed one; None for a new index (or --rebuild)
    rebuild: bool
    model: str                     # the embedding model's name
    sources: list
    requested: ChunkerSettings     # what the user asked (0 = auto), recorded beside the resolved chunker
    index_type: str
    files: list = field(default_factory=list)
    readable: list = field(default_factory=list)
    changed: list = field(default_factory=list)
    deleted: list = field(default_factory=list)

    @property
    def old_files(self) -> dict[str, dict]:
        return (self.manifest or {}).get("files", {}) if not self.rebuild else {}


def ingest(sources: list[str | os.PathLike] | None, index_dir: str | os.PathLike, *, model: str | None = None,
           chunk_tokens: int | None = None, overlap: int | None = None, index_type: str | None = None,
           rebuild: bool = False, follow_symlinks: bool = False,
           batch_size: int = 32, progress: bool = True, log=None) -> IngestSummary:
    """Bring the index in DIR in line with SOURCES (files and folders). Returns what changed.

    SOURCES=None re-syncs the sources recorded in the manifest. The index mirrors its sources: files no
    longer found there are removed from it. chunk_tokens / overlap / index_type None = what the index was
    built with (defaults 0 = auto, 16, "auto" for a new one), like the model. Symbolic links that leave a
    source folder are skipped unless follow_symlinks.
    """
    start = time.perf_counter()
    log = log or (lambda message: print(message, file=sys.stderr))
    _check_options(index_type, batch_size)
    target = open_store(index_dir)   # a folder, or a database URL (checked here, before anything is written)
    if sources and loaders.named_problems(list(sources)):  # refused before the index folder is made
        raise RungError(loaders.named_problems(list(sources)))
    target.prepare()
    with target.writer_lock(log):
        kill_point("locked")
        # Everything below is decided from the manifest read under the lock: the one committed state
        # (a crashed ingest's leftovers are gone once it is read).
        sync = _settings_in_force(target, target.committed_manifest(rebuild, log), rebuild, sources, model,
                                  chunk_tokens, overlap, index_type)
        files, problems = loaders.find_files(list(sync.sources), follow_symlinks=follow_symlinks,
                                             exclude=target.exclude)
        if problems:
            raise RungError(problems)
        summary = IngestSummary(files_seen=len(files))
        _find_changes(sync, files, summary)
        manifest = sync.manifest
        old_total = (manifest or {}).get("counts", {}).get("chunks", 0)
        if (manifest is not None and not rebuild and not sync.changed and not sync.deleted
                and manifest.get("index_type_setting") == sync.index_type
                and resolve_index_type(sync.index_type, old_total) == manifest.get("index_type")):
            return _nothing_changed(sync, summary, old_total, start)
        return _ingest_changes(sync, batch_size, progress, log, summary, start)


def _settings_in_force(target: IndexStore, manifest: dict | None, rebuild: bool, sources, model: str | None,
                       chunk_tokens: int | None, overlap: int | None, index_type: str | None) -> Sync:
    """The settings this ingest uses: what was asked, else what the index was built with, else the defaults;
    the same model as the index has (or a RungError saying to --rebuild)."""
    from rung.rag.embed import DEFAULT_MODEL, model_name

    kept = (manifest or {}) if not rebuild else {}
    requested = kept.get("chunker", {}).get("requested", {})
    chunk_tokens = requested.get("chunk_tokens", 0) if chunk_tokens is None else chunk_tokens
    overlap = requested.get("overlap", 16) if overlap is None else overlap
    index_type = kept.get("index_type_setting", "auto") if index_type is None else index_type
    if manifest is not None and not rebuild:
        check_model(manifest, target.location, model)
    if not sources:
        if manifest is None:
            raise RungError("give the files or folders to index (SOURCES)")
        sources = manifest.get("sources") or []
    name = model_name(model) if model else (manifest["model"] if manifest else DEFAULT_MODEL)
    return Sync(target, manifest, rebuild, name, list(sources), ChunkerSettings(chunk_tokens, overlap), index_type)


def _find_changes(sync: Sync, files: list, summary: IngestSummary) -> None:
    """Hash every file; a file is unchanged when its sha256 and the chunker settings are the index's. Only
    changed files keep their bytes (to be chunked); files gone from the sources are deleted."""
    manifest, old_files = sync.manifest, sync.old_files
    old_chunker = (manifest or {}).get("chunker", {})
    same_chunker = (manifest is not None and not sync.rebuild
                    and old_chunker.get("requested") == {"chunk_tokens": sync.requested.chunk_tokens,
                                                         "overlap": sync.requested.overlap}
                    and old_chunker.get("version") == ChunkerSettings().as_dict()["version"])
    # Files skipped last time for their content (binary, empty, ...) stay skipped until they change.
    old_skipped = (manifest or {}).get("skipped", {}) if same_chunker else {}
    for f in files:
        loaders.read_and_hash(f)
        if f.skip is None and old_skipped.get(f.source, {}).get("sha256") == f.sha256:
            f.skip = old_skipped[f.source]["reason"]
            f.skip_known = True
        if f.skip or (same_chunker and old_files.get(f.source, {}).get("sha256") == f.sha256):
            f.data = b""  # unchanged or skipped: only changed files' bytes are held until they are chunked
        if f.skip:
            summary.skipped[f.skip] += 1
            summary.skipped_files.append((f.source, f.skip))
    sync.files = files
    sync.readable = [f for f in files if f.skip is None]
    sync.changed = ([f for f in sync.readable if old_files.get(f.source, {}).get("sha256") != f.sha256]
                    if same_chunker else sync.readable)
    present = {f.source for f in sync.readable}
    sync.deleted = [s for s in old_files if s not in present]


def _nothing_changed(sync: Sync, summary: IngestSummary, old_total: int, start: float) -> IngestSummary:
    """No file changed and the index type holds: no model load, no new generation (the sources list may be
    rewritten: the same files named another way)."""
    manifest = sync.manifest
    summary.files_unchanged = len(sync.readable)
    summary.files_indexed = len(sync.old_files)
    summary.kept = summary.chunks = old_total
    summary.index_type = manifest.get("index_type", "")
    _record_bad_lines(summary, sync.old_files)
    resolved = sorted(str(Path(s).expanduser().resolve()) for s in sync.sources)
    if resolved != sorted(manifest.get("sources", [])):
        sync.target.update_sources(manifest, resolved)
    summary.seconds = time.perf_counter() - start
    return summary


def _ingest_changes(sync: Sync, batch_size: int, progress: bool, log, summary: IngestSummary,
                    start: float) -> IngestSummary:
    """Re-chunk the changed files, embed the text the index has no vector for, commit a new generation."""
    from rung.rag.chunking import Chunker, resolve_settings, token_limit
    from rung.rag.embed import dimension, load_embedder

    manifest, rebuild = sync.manifest, sync.rebuild
    model = load_embedder(sync.model)
    dim = dimension(model)
    if manifest is not None and not rebuild:
        check_model(manifest, sync.target.location, None, dim)
    settings = resolve_settings(sync.requested, token_limit(model), model.tokenizer.num_special_tokens_to_add())
    old_chunks = sync.target.committed_chunks(manifest) if manifest is not None and not rebuild else {}
    new_chunks, files_meta, skipped_meta = _chunk_files(sync, Chunker(model.tokenizer, settings), old_chunks,
                                                        summary)
    _record_bad_lines(summary, files_meta)
    summary.files_removed = sum(1 for s in sync.old_files if s not in files_meta)
    summary.chunks, summary.files_indexed = len(new_chunks), len(files_meta)
    kind = resolve_index_type(sync.index_type, len(new_chunks))
    if (manifest is not None and not rebuild and new_chunks == old_chunks and files_meta == sync.old_files
            and skipped_meta == manifest.get("skipped", {}) and kind == manifest.get("index_type")
            and manifest.get("index_type_setting") == sync.index_type
            and manifest["chunker"]["chunk_tokens"] == settings.chunk_tokens):
        # Files were re-read (their bytes changed) but the chunks came out the same: nothing to write.
        summary.kept = len(new_chunks)
        summary.index_type = manifest["index_type"]
        summary.seconds = time.perf_counter() - start
        return summary
    removed_ids = set(old_chunks) - set(new_chunks)
    added_ids = [cid for cid in new_chunks if cid not in old_chunks]  # ids are content hashes: a kept id has its vector
    summary.added, summary.removed = len(added_ids), len(removed_ids)
    summary.kept = len(set(new_chunks) & set(old_chunks))
    summary.index_type = kind
    if added_ids:
        log(f"embedding {len({embed_key(new_chunks[c]) for c in added_ids})} chunks with {sync.model} "
            f"({settings.chunk_tokens}-token chunks, {settings.overlap} overlap)")
    added = _embed(model, {cid: new_chunks[cid] for cid in added_ids}, batch_size, progress, summary)
    new_manifest = _manifest(sync, model, dim, kind, settings, new_chunks, files_meta, skipped_meta)
    sync.target.commit(new_manifest, new_chunks, added, removed_ids, kind, rebuild)   # the commit point
    summary.wrote = True
    summary.seconds = time.perf_counter() - start
    return summary


def _chunk_files(sync: Sync, chunker, old_chunks: dict[int, dict],
                 summary: IngestSummary) -> tuple[dict[int, dict], dict[str, dict], dict[str, dict]]:
    """(chunks, files, skipped) of the new generation: unchanged files keep their records as they are; changed
    ones are chunked again (a file that yields no chunk is skipped as empty)."""
    from rung.rag.store import chunk_id

    changed_sources = {f.source for f in sync.changed}
    readable_sources = {f.source for f in sync.readable}
    new_chunks = {cid: record for cid, record in old_chunks.items()
                  if record["source"] not in changed_sources and record["source"] in readable_sources}
    files_meta = {f.source: sync.old_files[f.source] for f in sync.readable if f.source not in changed_sources}
    skipped_meta = {f.source: {"sha256": f.sha256, "reason": f.skip} for f in sync.files if f.skip_known}
    summary.files_unchanged = len(sync.readable) - len(sync.changed)
    summary.files_changed = 0
    for f in sync.changed:
        records = [c for s in loaders.parse(f) for c in chunker.split(s)]
        if f.skip is None and not records:
            f.skip = "empty"
        if f.skip:
            summary.skipped[f.skip] += 1
            summary.skipped_files.append((f.source, f.skip))
            skipped_meta[f.source] = {"sha256": f.sha256, "reason": f.skip}
            continue
        summary.files_changed += 1
        ordinals: Counter = Counter()
        for record in records:
            text_hash = hashlib.sha256(embed_key(record).encode("utf-8")).hexdigest()
            ordinals[text_hash] += 1
            cid = chunk_id(f.source, text_hash, ordinals[text_hash] - 1)
            if cid in new_chunks:
                raise RungError(f"chunk id collision in {f.source}; please report this")
            new_chunks[cid] = {"id": cid, "source": f.source, **record}
        files_meta[f.source] = {"sha256": f.sha256, "bytes": len(f.data), "chunks": len(records)}
        if f.bad_lines:
            files_meta[f.source]["bad_lines"] = {"count": len(f.bad_lines), "first": [list(b) for b in f.bad_lines[:3]]}
    return new_chunks, files_meta, skipped_meta


def embed_key(record: dict) -> str:
    from rung.rag.chunking import embed_text

    return embed_text(record)


def _embed(model, chunks: dict[int, dict], batch_size: int, progress: bool, summary: IngestSummary) -> dict:
    """id -> vector for the new chunks; identical texts are embedded once."""
    from rung.rag.embed import embed_documents

    unique_texts: dict[str, int] = {}
    lengths: dict[str, int] = {}
    for record in chunks.values():
        unique_texts.setdefault(embed_key(record), len(unique_texts))
        lengths[embed_key(record)] = record["tokens"]
    t0 = time.perf_counter()
    vectors = embed_documents(model, list(unique_texts), lengths=[lengths[t] for t in unique_texts],
                              batch_size=batch_size, progress=progress)
    summary.embed_seconds = time.perf_counter() - t0
    summary.embedded = len(unique_texts)
    return {cid: vectors[unique_texts[embed_key(record)]] for cid, record in chunks.items()}


def _manifest(sync: Sync, model, dim: int, kind: str, settings, new_chunks: dict[int, dict],
              files_meta: dict[str, dict], skipped_meta: dict[str, dict]) -> dict[str, Any]:
    """The new generation's manifest: everything a reader needs to trust (or refuse) the index."""
    import sentence_transformers

    manifest, now = sync.manifest or {}, _now()
    # Past both the recorded generation and the folder in use (never the same name as the committed one).
    generation = max(manifest.get("generation", 0), int(manifest.get("generation_dir", "g0")[1:])) + 1
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generation": generation,
        "model": sync.model,
        "dim": dim,
        "max_seq_length": model.max_seq_length,
        "metric": "inner_product",
        "normalized": True,
        "score": "cosine similarity (inner product of unit vectors)",
        "index_type": kind,
        "index_type_setting": sync.index_type,
        "hnsw": {"M": store.HNSW_M, "efConstruction": store.HNSW_EF_CONSTRUCTION, "efSearch": store.HNSW_EF_SEARCH,
                 "threshold": store.HNSW_THRESHOLD},
        "sentence_transformers_version": sentence_transformers.__version__,
        "chunker": {**settings.as_dict(), "requested": {"chunk_tokens": sync.requested.chunk_tokens,
                                                        "overlap": sync.requested.overlap}},
        "sources": sorted(str(Path(s).expanduser().resolve()) for s in sync.sources),
        "counts": {"files": len(files_meta), "chunks": len(new_chunks),
                   "documents": len({c.get("doc", c["source"]) for c in new_chunks.values()})},
        "created": manifest.get("created", now) if not sync.rebuild else now,
        "updated": now,
        "files": dict(sorted(files_meta.items())),
        "skipped": dict(sorted(skipped_meta.items())),   # skipped for their content, until their bytes change
    }
