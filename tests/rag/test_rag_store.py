"""What a loaded index really is: the HNSW switch-over and efSearch read from the faiss object after
RagIndex.load (not from the manifest), and the warm "nothing changed" path that never loads the embedder."""

from __future__ import annotations

import pytest
from .rag_helpers import check_index, write_docs

from rung.rag import embed, store
from rung.rag.ingest import ingest
from rung.rag.store import RagIndex, read_manifest


def loaded_kind(index_dir) -> tuple[str, int | None]:
    """(faiss class of the index inside the id map, its efSearch) of the index as loaded for search."""
    import faiss

    loaded = RagIndex.load(index_dir, load_model=False)   # kept alive: the id map owns the inner index
    inner = faiss.downcast_index(loaded.index.index)
    return type(inner).__name__, inner.hnsw.efSearch if hasattr(inner, "hnsw") else None


def test_auto_switches_to_hnsw_above_the_threshold_with_the_ef_search_it_records(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "HNSW_THRESHOLD", 6)        # 50,000 chunks in real use
    docs = write_docs(tmp_path / "docs", 5)
    index_dir = tmp_path / "index"
    assert ingest([docs], index_dir, progress=False).index_type == "flat"
    assert loaded_kind(index_dir) == ("IndexFlatIP", None)
    write_docs(docs, 8)                                     # 8 chunks: at or above the threshold
    summary = ingest([docs], index_dir, progress=False)
    assert summary.index_type == "hnsw" and summary.embedded == 3
    kind, ef = loaded_kind(index_dir)
    assert kind == "IndexHNSWFlat" and ef == store.HNSW_EF_SEARCH == 256     # not FAISS's default 16
    assert read_manifest(index_dir)["hnsw"]["threshold"] == 6
    loaded = RagIndex.load(index_dir)
    assert loaded.search("How webhooks work", 1)[0].chunk["source"] == "note-3.md"
    for i in range(3, 8):                                   # back under the threshold: flat again
        (docs / f"note-{i}.md").unlink()
    assert ingest([docs], index_dir, progress=False).index_type == "flat"
    assert loaded_kind(index_dir) == ("IndexFlatIP", None)
    check_index(index_dir, chunks=3)


def test_a_manifest_that_disagrees_with_the_loaded_index_type_is_refused(tmp_path):
    import json

    from rung.core.errors import RungError

    docs = write_docs(tmp_path / "docs", 2)
    ingest([docs], tmp_path / "index", index_type="hnsw", progress=False)
    assert loaded_kind(tmp_path / "index")[0] == "IndexHNSWFlat"
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    (tmp_path / "index" / "manifest.json").write_text(json.dumps({**manifest, "index_type": "flat"}))
    with pytest.raises(RungError, match="holds a hnsw index but the manifest says flat"):
        RagIndex.load(tmp_path / "index", load_model=False)


def test_a_warm_reingest_of_unchanged_documents_never_loads_the_embedder(tmp_path, monkeypatch):
    docs = write_docs(tmp_path / "docs", 3)
    (docs / "skip.md").write_text("\n")
    index_dir = tmp_path / "index"
    first = ingest([docs], index_dir, progress=False)
    manifest_bytes = (index_dir / "manifest.json").read_bytes()

    def no_model(*args, **kwargs):
        raise AssertionError("the embedding model was loaded for an index with nothing to do")

    monkeypatch.setattr(embed, "load_embedder", no_model)
    monkeypatch.setattr(embed, "_CACHE", {})
    again = ingest([docs], index_dir, progress=False)
    assert again.wrote is False and again.kept == first.chunks == 3 and again.skipped == {"empty": 1}
    assert (index_dir / "manifest.json").read_bytes() == manifest_bytes
    again = ingest(None, index_dir, progress=False)        # the recorded sources: the same
    assert again.wrote is False
    (docs / "note-0.md").write_text("# Changed\n\nNew text.\n")
    with pytest.raises(AssertionError, match="embedding model was loaded"):   # a change does need the model
        ingest([docs], index_dir, progress=False)
    check_index(index_dir, chunks=3)                       # and the failed run left the index as it was
