"""The database store: an index in PostgreSQL with pgvector (rag/backend.py IndexStore and SearchIndex).

    NAME_chunks        id (content hash, primary key), source, doc, record (jsonb: the chunk as in chunks.jsonl),
                       search_text (heading trail + text, what was embedded), embedding vector(dim),
                       fts tsvector generated from search_text; a GIN index on fts, an HNSW index on embedding
                       (vector_ip_ops) when the index type is hnsw, none for flat (exact search)
    NAME_manifest      one row: the manifest (jsonb), as manifest.json in a folder
    NAME_generations   one row per committed generation: when, chunks, added, removed, model

An ingest holds a session advisory lock on the index (pg_advisory_lock: a second ingest waits for it, and a
killed one's lock ends with its session), reads the manifest and the chunks under it, then writes the next
generation in ONE transaction: delete removed chunks, COPY new ones, switch the HNSW index, replace the
manifest, log the generation, check the row count, commit. A kill at any point before the commit leaves the
previous generation serving (PostgreSQL rolls the transaction back); readers never see half of one.

Built on psycopg 3 and the pgvector package's adapter, not langchain-postgres: its PGVector keeps rows under
random ids in its own collection tables, with no content-hash ids, manifest or single-transaction update.
Kill points (tests only, rag/layout.py kill_point): PG_KILL_POINTS below.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rung.core.errors import RungError
from rung.rag.location import DatabaseTarget
from rung.rag.layout import DamagedIndex, kill_point, manifest_problems

PG_KILL_POINTS = ("locked", "chunks_deleted", "chunks_copied", "before_commit", "after_commit")
FTS_CONFIG = "english"        # PostgreSQL's text search configuration: English stemming and stop words
CONNECT_TIMEOUT_S = 10
LOCK_TIMEOUT = "10min"        # the longest a second ingest waits for the first
# pgvector's hnsw.ef_search tops out at 1000; a deeper search than that is done exactly.
MAX_EF_SEARCH = 1000


def connect(target: DatabaseTarget, *, vectors: bool = True):
    """An autocommit connection (each statement sees the latest commit); RungError when the server is not there."""
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg
    except ImportError:
        raise RungError(f"--index {target.url}: a database index needs psycopg and pgvector: "
                        "pip install 'rung[pg]'") from None

    try:
        conn = psycopg.connect(target.conninfo, autocommit=True,
                               **({} if "connect_timeout" in target.conninfo else {"connect_timeout": CONNECT_TIMEOUT_S}))
    except psycopg.Error as error:
        reason = (str(error).strip().splitlines() or ["unknown"])[-1][:200]
        raise RungError(f"--index {target.url}: cannot connect to PostgreSQL ({reason})") from None
    if vectors:
        from pgvector.psycopg import register_vector

        try:
            register_vector(conn)
        except psycopg.ProgrammingError:
            conn.close()
            raise RungError(f"--index {target.url}: the pgvector extension is not installed in this database "
                            "(CREATE EXTENSION vector; `rung rag index` creates it when it may)") from None
    return conn


def names(table: str) -> dict[str, Any]:
    from psycopg import sql

    return {key: sql.Identifier(f"{table}_{key}") for key in ("chunks", "manifest", "generations", "hnsw", "fts")}


def _exists(conn, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{table}_manifest"]).fetchone()[0]


def _read_manifest(conn, target: DatabaseTarget) -> dict[str, Any] | None:
    from psycopg import sql

    if not _exists(conn, target.table):
        return None
    row = conn.execute(sql.SQL("SELECT manifest FROM {manifest}").format(**names(target.table))).fetchone()
    hint = f"rebuild the index with `rung rag index SOURCES --index {target.url} --rebuild`"
    if row is None or not isinstance(row[0], dict):
        raise DamagedIndex(f"{target.url}: {target.table}_manifest holds no manifest; {hint}")
    problems = manifest_problems(row[0]) or ([] if row[0].get("store") == "postgresql" else ["not a database index"])
    if problems:
        raise DamagedIndex(f"{target.url}: damaged manifest: {'; '.join(problems[:4])}; {hint}")
    return row[0]


def lock_key(table: str) -> int:
    """A signed 64-bit advisory-lock key for the index (one per table name)."""
    return int.from_bytes(hashlib.sha256(f"rung-rag:{table}".encode()).digest()[:8], "big", signed=True)


class PgStore:
    def __init__(self, target: DatabaseTarget):
        self.target = target
        self.location = target.url
        self.exclude: tuple = ()
        self.conn = None

    def prepare(self) -> None:
        """Connect, make sure pgvector is there, refuse tables of that name that rung did not make."""
        import psycopg

        conn = connect(self.target, vectors=False)
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as error:
            conn.close()
            raise RungError(f"--index {self.target.url}: cannot create the pgvector extension "
                            f"({str(error).strip().splitlines()[0][:160]}); ask the database owner to run "
                            "CREATE EXTENSION vector") from None
        from pgvector.psycopg import register_vector

        register_vector(conn)
        table = self.target.table
        if not _exists(conn, table):
            taken = [f"{table}_{k}" for k in ("chunks", "generations") if
                     conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{table}_{k}"]).fetchone()[0]]
            if taken:
                conn.close()
                raise RungError(f"--index {self.target.url}: table {taken[0]} exists and is not part of a rung index "
                                f"(no {table}_manifest); choose another table=")
        self.conn = conn

    @contextmanager
    def writer_lock(self, log):
        import psycopg

        key = lock_key(self.target.table)
        try:
            if not self.conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:
                log(f"waiting for the ingest that is writing {self.target.url} (up to {LOCK_TIMEOUT})")
                self.conn.execute("SELECT set_config('lock_timeout', %s, false)", [LOCK_TIMEOUT])
                try:
                    self.conn.execute("SELECT pg_advisory_lock(%s)", [key])
                except psycopg.errors.LockNotAvailable:
                    raise RungError(f"{self.target.url}: another `rung rag index` has been writing this index for "
                                    f"over {LOCK_TIMEOUT}; try again when it is done") from None
                self.conn.execute("SELECT set_config('lock_timeout', '0', false)")
            yield
        finally:
            self.conn.close()   # ends the session: the advisory lock goes with it

    def committed_manifest(self, rebuild: bool, log) -> dict[str, Any] | None:
        try:
            return _read_manifest(self.conn, self.target)
        except DamagedIndex as error:
            if not rebuild:
                raise
            log(f"replacing a damaged index: {error.message.split('; rebuild')[0]}")
            return None

    def committed_chunks(self, manifest: dict[str, Any]) -> dict[int, dict[str, Any]]:
        from psycopg import sql

        rows = self.conn.execute(sql.SQL("SELECT id, record FROM {chunks}").format(**names(self.target.table)))
        chunks = {cid: record for cid, record in rows}
        if len(chunks) != manifest["counts"]["chunks"]:
            raise DamagedIndex(f"{self.target.url}: {len(chunks)} chunks, but the manifest says "
                               f"{manifest['counts']['chunks']}; rebuild the index with --rebuild")
        return chunks

    def update_sources(self, manifest: dict[str, Any], sources: list[str]) -> None:
        from psycopg import sql
        from psycopg.types.json import Jsonb

        self.conn.execute(sql.SQL("UPDATE {manifest} SET manifest = %s").format(**names(self.target.table)),
                          [Jsonb({**manifest, "sources": sources})])

    def commit(self, manifest: dict[str, Any], chunks: dict[int, dict[str, Any]], added: dict[int, Any],
               removed: set[int], kind: str, rebuild: bool) -> None:
        from psycopg import sql
        from psycopg.types.json import Jsonb

        from rung.rag import store
        from rung.rag.chunking import embed_text

        conn, n = self.conn, names(self.target.table)
        server = conn.execute("SELECT current_setting('server_version'), "
                              "(SELECT extversion FROM pg_extension WHERE extname = 'vector')").fetchone()
        manifest = {**manifest, "store": "postgresql", "table": self.target.table, "postgresql_version": server[0],
                    "pgvector_version": server[1], "fts_config": FTS_CONFIG}
        with conn.transaction():
            self._ensure_tables(manifest["dim"], rebuild)
            # Past every logged generation, also when a damaged manifest is being replaced (--rebuild).
            logged = conn.execute(sql.SQL("SELECT max(generation) FROM {generations}").format(**n)).fetchone()[0]
            manifest["generation"] = max(manifest["generation"], (logged or 0) + 1)
            if rebuild:
                conn.execute(sql.SQL("DELETE FROM {chunks}").format(**n))
            elif removed:
                conn.execute(sql.SQL("DELETE FROM {chunks} WHERE id = ANY(%s)").format(**n), [list(removed)])
            kill_point("chunks_deleted")
            with conn.cursor().copy(sql.SQL("COPY {chunks} (id, source, doc, record, search_text, embedding) "
                                            "FROM STDIN (FORMAT BINARY)").format(**n)) as copy:
                copy.set_types(["int8", "text", "text", "jsonb", "text", "vector"])
                for cid, vector in added.items():
                    c = chunks[cid]
                    copy.write_row([cid, c["source"], c.get("doc", c["source"]), Jsonb(c), embed_text(c), vector])
            kill_point("chunks_copied")
            if kind == "hnsw":
                conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {hnsw} ON {chunks} USING hnsw (embedding "
                                     "vector_ip_ops) WITH (m = {m}, ef_construction = {ef})").format(
                    **n, m=sql.Literal(store.HNSW_M), ef=sql.Literal(store.HNSW_EF_CONSTRUCTION)))
            else:
                conn.execute(sql.SQL("DROP INDEX IF EXISTS {hnsw}").format(**n))
            conn.execute(sql.SQL("INSERT INTO {manifest} (one, manifest) VALUES (true, %s) ON CONFLICT (one) "
                                 "DO UPDATE SET manifest = EXCLUDED.manifest").format(**n), [Jsonb(manifest)])
            conn.execute(sql.SQL("INSERT INTO {generations} (generation, chunks, added, removed, model) "
                                 "VALUES (%s, %s, %s, %s, %s)").format(**n),
                         [manifest["generation"], len(chunks), len(added), len(removed), manifest["model"]])
            count = conn.execute(sql.SQL("SELECT count(*) FROM {chunks}").format(**n)).fetchone()[0]
            if count != len(chunks):   # rolls the transaction back: the previous generation stays
                raise DamagedIndex(f"{self.target.url}: the new generation would hold {count} chunks, not "
                                   f"{len(chunks)}; nothing was changed; rebuild the index with --rebuild")
            kill_point("before_commit")
        kill_point("after_commit")

    def _ensure_tables(self, dim: int, rebuild: bool) -> None:
        """Create the tables (in the commit's transaction); a rebuild to another dimension recreates chunks."""
        from psycopg import sql

        conn, n = self.conn, names(self.target.table)
        if _exists(conn, self.target.table):
            if not rebuild:
                return
            old = conn.execute("SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                               "AND attname = 'embedding'", [f"{self.target.table}_chunks"]).fetchone()
            if old and old[0] == dim:
                return
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {chunks}").format(**n))
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {chunks} (id bigint PRIMARY KEY, source text NOT NULL, doc text NOT NULL, "
            "record jsonb NOT NULL, search_text text NOT NULL, embedding vector({dim}) NOT NULL, "
            "fts tsvector GENERATED ALWAYS AS (to_tsvector({config}, search_text)) STORED)").format(
            **n, dim=sql.Literal(dim), config=sql.Literal(FTS_CONFIG)))
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {fts} ON {chunks} USING gin (fts)").format(**n))
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {manifest} (one boolean PRIMARY KEY DEFAULT true "
                             "CHECK (one), manifest jsonb NOT NULL)").format(**n))
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {generations} (generation integer PRIMARY KEY, "
                             "committed timestamptz NOT NULL DEFAULT now(), chunks integer, added integer, "
                             "removed integer, model text)").format(**n))


# --------------------------------------------------------------------------------------------- reading

@dataclass
class PgIndex:
    """A database index loaded for search. The connection is autocommit: each query sees the latest generation."""

    target: DatabaseTarget
    manifest: dict[str, Any]
    conn: Any = field(repr=False)
    count: int
    model: Any = field(default=None, repr=False)
    retrieval: Any = None

    @classmethod
    def load(cls, target: DatabaseTarget, *, model: str | None = None, load_model: bool = True) -> "PgIndex":
        from psycopg import sql

        from rung.rag.store import check_model

        conn = connect(target, vectors=False)
        manifest = _read_manifest(conn, target)
        if manifest is None:
            conn.close()
            raise RungError(f"{target.url}: no such index; build one with `rung rag index SOURCES --index {target.url}`")
        from pgvector.psycopg import register_vector

        register_vector(conn)
        check_model(manifest, target.url, model)
        count = conn.execute(sql.SQL("SELECT count(*) FROM {chunks}").format(**names(target.table))).fetchone()[0]
        loaded = cls(target, manifest, conn, count)
        if load_model:
            from rung.rag.embed import dimension, load_embedder

            loaded.model = load_embedder(manifest["model"])
            check_model(manifest, target.url, None, dimension(loaded.model))
        return loaded

    def __len__(self) -> int:
        return self.count

    def close(self) -> None:
        self.conn.close()

    def documents(self) -> set[str]:
        from psycopg import sql

        rows = self.conn.execute(sql.SQL("SELECT DISTINCT doc FROM {chunks}").format(**names(self.target.table)))
        return {doc for (doc,) in rows}

    def search_vector(self, vector, k: int) -> list:
        """Top-k by inner product (cosine of unit vectors): exact for a flat index, HNSW at efSearch >= k."""
        from psycopg import sql

        from rung.rag.store import Hit

        k = max(0, min(int(k), self.count))
        if k == 0:
            return []
        query = sql.SQL("SELECT record, -(embedding <#> %s) FROM {chunks} ORDER BY embedding <#> %s LIMIT %s").format(
            **names(self.target.table))
        vec = vector.reshape(-1).astype("float32")
        with self.conn.transaction():
            if self.manifest["index_type"] == "hnsw" and k <= MAX_EF_SEARCH:
                ef = max(k, self.manifest.get("hnsw", {}).get("efSearch", 256))
                self.conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(min(ef, MAX_EF_SEARCH))])
            else:
                self.conn.execute("SELECT set_config('enable_indexscan', 'off', true)")   # exact
            rows = self.conn.execute(query, [vec, vec, k]).fetchall()
        return [Hit(rank=i, score=float(score), chunk=record) for i, (record, score) in enumerate(rows, start=1)]

    def keyword_search(self, query: str, k: int) -> list:
        """Top-k by PostgreSQL full text: any of the query's stemmed words (OR), ranked by ts_rank_cd."""
        from psycopg import sql

        from rung.rag.store import Hit

        statement = sql.SQL(
            "WITH q AS (SELECT to_tsquery('simple', string_agg(quote_literal(lexeme), ' | ')) AS q "
            "FROM unnest(to_tsvector({config}, %s))) "
            "SELECT record, ts_rank_cd(fts, q.q) AS rank FROM {chunks}, q WHERE fts @@ q.q "
            "ORDER BY rank DESC, id LIMIT %s").format(**names(self.target.table), config=sql.Literal(FTS_CONFIG))
        rows = self.conn.execute(statement, [query, max(0, int(k))]).fetchall()
        return [Hit(rank=i, score=float(score), chunk=record) for i, (record, score) in enumerate(rows, start=1)]

    def search(self, query: str, k: int = 5) -> list:
        from rung.rag.hybrid import search

        return search(self, query, k)

    def search_documents(self, query: str, k: int = 10) -> list:
        from rung.rag.hybrid import search_documents

        return search_documents(self, query, k)
