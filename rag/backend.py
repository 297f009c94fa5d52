"""Where an index lives: a folder (FAISS + JSONL, rag/folder_store.py) or a PostgreSQL table set with pgvector
(rag/pg_store.py). Both implement the same two Protocols, so the commands never branch on the kind:

    IndexStore    the writer's side, used by rag/ingest.py under its lock: read the committed manifest and
                  chunks, then commit the next generation whole (or not at all)
    SearchIndex   the reader's side: a loaded index searched by text, by vector, by keywords

`--index` takes either. A database is named by a URL:

    postgresql://USER@HOST:PORT/DB?table=NAME
    postgresql:///DB?host=/path/to/socket/dir&table=NAME

`table` names the index (letters, digits, _; tables NAME_chunks, NAME_manifest and NAME_generations). Other
query parameters are libpq's own (sslmode, connect_timeout, ...). A password in the URL is refused: URLs are
written into manifests, plans and reports, and a password there would be written too. libpq reads it from
PGPASSWORD, ~/.pgpass or a service file (`postgresql:///?service=NAME&table=...`) instead.
"""

from __future__ import annotations

import os
from typing import Any, ContextManager, Protocol

from rung.rag.location import DatabaseTarget, check_location, is_url, parse_database_url

__all__ = ["IndexStore", "SearchIndex", "open_store", "load_index", "DatabaseTarget", "check_location", "is_url",
           "parse_database_url"]

# --------------------------------------------------------------------------------------------- the Protocols

class IndexStore(Protocol):
    """An index's storage, as an ingest sees it. Every method but `commit` only reads."""

    location: str     # shown in messages and recorded in manifests (never a password)
    exclude: tuple    # paths an ingest must not index (the index folder itself)

    def prepare(self) -> None:
        """Refuse a target rung must not write to, before anything is written; create what is missing."""

    def writer_lock(self, log) -> ContextManager[None]:
        """Held from the first read to the last write; two ingests never interleave."""

    def committed_manifest(self, rebuild: bool, log) -> dict[str, Any] | None:
        """The manifest of the generation serving now (None for a new index); leftovers of a crash removed."""

    def committed_chunks(self, manifest: dict[str, Any]) -> dict[int, dict[str, Any]]:
        """{id: chunk record} of the committed generation."""

    def update_sources(self, manifest: dict[str, Any], sources: list[str]) -> None:
        """Record new source paths on an index whose contents did not change."""

    def commit(self, manifest: dict[str, Any], chunks: dict[int, dict[str, Any]], added: dict[int, Any],
               removed: set[int], kind: str, rebuild: bool) -> None:
        """Make `chunks` (with vectors for `added`; the others keep theirs) the serving generation, atomically."""


class SearchIndex(Protocol):
    """A loaded index (rag/store.py RagIndex, rag/pg_store.py PgIndex)."""

    manifest: dict[str, Any]
    model: Any

    def __len__(self) -> int: ...

    def documents(self) -> set[str]:
        """Every document name the index holds (eval reports judged documents it does not)."""

    def search_vector(self, vector, k: int) -> list: ...

    def keyword_search(self, query: str, k: int) -> list:
        """Top-k chunks by keywords (BM25 in a folder, PostgreSQL full text in a database)."""

    def search(self, query: str, k: int = 5) -> list: ...

    def search_documents(self, query: str, k: int = 10) -> list: ...


# --------------------------------------------------------------------------------------------- choosing

def open_store(location: str | os.PathLike) -> IndexStore:
    if is_url(str(location)):
        from rung.rag.pg_store import PgStore

        return PgStore(parse_database_url(str(location)))
    from rung.rag.folder_store import FolderStore

    return FolderStore(location)


def load_index(location: str | os.PathLike, *, model: str | None = None, load_model: bool = True,
               retrieval: Any = None) -> SearchIndex:
    """Open the index at a folder or a database URL. `retrieval`: core/settings.py RetrievalSettings (dense
    unless given)."""
    if is_url(str(location)):
        from rung.rag.pg_store import PgIndex

        index = PgIndex.load(parse_database_url(str(location)), model=model, load_model=load_model)
    else:
        from rung.rag.store import RagIndex

        index = RagIndex.load(location, model=model, load_model=load_model)
    if retrieval is not None:
        index.retrieval = retrieval
    return index
