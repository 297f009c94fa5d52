"""What an ingest decides has changed (rag/ingest.py _find_changes, _nothing_changed), stated as guarantees and
checked without an embedder: a file is re-chunked exactly when its bytes or the chunker settings differ from the
committed index; files gone from the sources are deleted; a file skipped last time for its content stays skipped
until its bytes change; an ingest with nothing to do reports the index as it is."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from rung.rag.chunking import CHUNKER_VERSION, ChunkerSettings
from rung.rag.ingest import IngestSummary, Sync, _find_changes, _nothing_changed
from rung.rag.loaders import SourceFile


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest(files: dict[str, str], *, chunk_tokens: int = 0, overlap: int = 16, version: int = CHUNKER_VERSION,
             skipped: dict | None = None, **more) -> dict:
    """A committed manifest whose files had these contents."""
    return {"chunker": {"requested": {"chunk_tokens": chunk_tokens, "overlap": overlap}, "version": version},
            "files": {name: {"sha256": sha(text), "bytes": len(text), "chunks": 1} for name, text in files.items()},
            "skipped": skipped or {}, **more}


def sources(tmp_path: Path, contents: dict[str, str]) -> list[SourceFile]:
    files = []
    for name, text in contents.items():
        (tmp_path / name).write_text(text)
        files.append(SourceFile(source=name, path=tmp_path / name))
    return files


def sync(old: dict | None, *, rebuild: bool = False, chunk_tokens: int = 0, overlap: int = 16, target=None) -> Sync:
    return Sync(target, old, rebuild, "model", [], ChunkerSettings(chunk_tokens, overlap), "auto")


def changes(tmp_path, old, contents, **kwargs):
    s, summary = sync(old, **kwargs), IngestSummary()
    files = sources(tmp_path, contents)
    _find_changes(s, files, summary)
    return s, summary, {f.source: f for f in files}


def names(files) -> list[str]:
    return sorted(f.source if hasattr(f, "source") else f for f in files)


def test_a_new_index_reads_every_file_and_deletes_nothing(tmp_path):
    s, summary, files = changes(tmp_path, None, {"a.md": "alpha", "b.md": "beta"})
    assert names(s.changed) == names(s.readable) == ["a.md", "b.md"] and s.deleted == []
    assert files["a.md"].data == b"alpha"   # changed files keep their bytes for the chunker
    assert not summary.skipped and summary.skipped_files == []


def test_only_files_whose_bytes_changed_are_read_again(tmp_path):
    s, _, files = changes(tmp_path, manifest({"a.md": "alpha", "b.md": "beta"}), {"a.md": "alpha", "b.md": "BETA"})
    assert names(s.changed) == ["b.md"] and names(s.readable) == ["a.md", "b.md"] and s.deleted == []
    assert files["a.md"].data == b"" and files["b.md"].data == b"BETA"  # unchanged bytes are not held
    assert files["a.md"].sha256 == sha("alpha")


def test_a_file_new_to_the_index_is_read(tmp_path):
    s, _, _ = changes(tmp_path, manifest({"a.md": "alpha"}), {"a.md": "alpha", "new.md": "fresh"})
    assert names(s.changed) == ["new.md"]


def test_files_gone_from_the_sources_are_deleted(tmp_path):
    s, _, _ = changes(tmp_path, manifest({"a.md": "alpha", "gone.md": "x"}), {"a.md": "alpha"})
    assert s.deleted == ["gone.md"] and s.changed == []


def test_an_indexed_file_that_is_now_skipped_is_deleted_from_the_index(tmp_path):
    s, summary, files = changes(tmp_path, manifest({"a.md": "alpha", "b.xyz": "beta"}),
                                {"a.md": "alpha", "b.xyz": "beta"})
    assert s.deleted == ["b.xyz"] and names(s.readable) == ["a.md"]
    assert files["b.xyz"].skip == "unsupported type (.xyz)" and files["b.xyz"].data == b""
    assert summary.skipped == {"unsupported type (.xyz)": 1}
    assert summary.skipped_files == [("b.xyz", "unsupported type (.xyz)")]


def test_a_different_chunk_size_re_reads_every_file(tmp_path):
    old = manifest({"a.md": "alpha", "b.md": "beta"}, chunk_tokens=0)
    s, _, files = changes(tmp_path, old, {"a.md": "alpha", "b.md": "beta"}, chunk_tokens=64)
    assert names(s.changed) == ["a.md", "b.md"] and files["a.md"].data == b"alpha"


def test_a_different_overlap_re_reads_every_file(tmp_path):
    old = manifest({"a.md": "alpha"}, overlap=16)
    s, _, _ = changes(tmp_path, old, {"a.md": "alpha"}, overlap=8)
    assert names(s.changed) == ["a.md"]


def test_a_new_chunker_version_re_reads_every_file(tmp_path):
    old = manifest({"a.md": "alpha"}, version=CHUNKER_VERSION - 1)
    s, _, _ = changes(tmp_path, old, {"a.md": "alpha"})
    assert names(s.changed) == ["a.md"]


def test_the_same_settings_and_bytes_read_nothing(tmp_path):
    old = manifest({"a.md": "alpha"}, chunk_tokens=64, overlap=8)
    s, _, _ = changes(tmp_path, old, {"a.md": "alpha"}, chunk_tokens=64, overlap=8)
    assert s.changed == [] and s.deleted == []


def test_a_rebuild_reads_every_file_and_forgets_the_old_list(tmp_path):
    old = manifest({"a.md": "alpha", "gone.md": "x"}, skipped={"e.md": {"sha256": sha("   "), "reason": "empty"}})
    s, _, files = changes(tmp_path, old, {"a.md": "alpha", "e.md": "   "}, rebuild=True)
    assert names(s.changed) == ["a.md", "e.md"] and s.deleted == []   # the rebuilt index starts empty
    assert files["e.md"].skip is None and not files["e.md"].skip_known


def test_a_file_skipped_for_its_content_stays_skipped_until_it_changes(tmp_path):
    old = manifest({"a.md": "alpha"}, skipped={"e.md": {"sha256": sha("   "), "reason": "empty"},
                                              "f.md": {"sha256": sha("old"), "reason": "empty"}})
    s, summary, files = changes(tmp_path, old, {"a.md": "alpha", "e.md": "   ", "f.md": "now some text"})
    assert files["e.md"].skip == "empty" and files["e.md"].skip_known and files["e.md"].data == b""
    assert summary.skipped == {"empty": 1} and summary.skipped_files == [("e.md", "empty")]
    assert files["f.md"].skip is None and not files["f.md"].skip_known     # its bytes changed: read again
    assert names(s.changed) == ["f.md"] and names(s.readable) == ["a.md", "f.md"]


def test_a_skip_from_other_chunker_settings_is_not_trusted(tmp_path):
    old = manifest({}, chunk_tokens=0, skipped={"e.md": {"sha256": sha("tiny"), "reason": "empty"}})
    s, summary, files = changes(tmp_path, old, {"e.md": "tiny"}, chunk_tokens=64)
    assert files["e.md"].skip is None and names(s.changed) == ["e.md"] and not summary.skipped


class Target:
    def __init__(self):
        self.updated = []

    def update_sources(self, manifest, resolved):
        self.updated.append(resolved)


def test_nothing_changed_reports_the_index_as_committed(tmp_path):
    old = manifest({"a.md": "alpha", "b.md": "beta"}, index_type="flat", sources=[str(tmp_path.resolve())])
    old["files"]["b.md"]["bad_lines"] = {"count": 2, "first": [[3, "not JSON"]]}
    target = Target()
    s = sync(old, target=target)
    s.sources = [str(tmp_path)]
    _find_changes(s, sources(tmp_path, {"a.md": "alpha", "b.md": "beta"}), IngestSummary())
    start = time.perf_counter()
    summary = _nothing_changed(s, IngestSummary(files_seen=2), 7, start)
    assert (summary.files_unchanged, summary.files_indexed, summary.kept, summary.chunks) == (2, 2, 7, 7)
    assert summary.index_type == "flat" and summary.files_changed == 0 and not summary.wrote
    assert summary.bad_lines == {"b.md": {"count": 2, "first": [[3, "not JSON"]]}}
    assert 0 <= summary.seconds < 60
    assert target.updated == []   # the same sources: the manifest is not rewritten


def test_nothing_changed_records_the_sources_named_another_way(tmp_path):
    (tmp_path / "docs").mkdir()
    old = manifest({}, index_type="flat", sources=["/elsewhere"])
    target = Target()
    s = sync(old, target=target)
    s.sources = [str(tmp_path / "docs" / ".." / "docs"), str(tmp_path / "b")]
    summary = _nothing_changed(s, IngestSummary(), 0, time.perf_counter())
    assert target.updated == [sorted([str((tmp_path / "docs").resolve()), str((tmp_path / "b").resolve())])]
    assert summary.index_type == "flat"


def test_an_old_manifest_without_a_chunker_or_skipped_record_reads_every_file(tmp_path):
    old = manifest({"a.md": "alpha"})
    del old["chunker"], old["skipped"]
    s, _, _ = changes(tmp_path, old, {"a.md": "alpha"})
    assert names(s.changed) == ["a.md"]
    old = manifest({"a.md": "alpha"})
    del old["skipped"]
    s, _, _ = changes(tmp_path, old, {"a.md": "alpha"})
    assert s.changed == []


def test_every_skipped_file_is_counted_and_kept_in_the_sync(tmp_path):
    s, summary, files = changes(tmp_path, None, {"a.xyz": "1", "b.xyz": "2", "c.md": "text"})
    assert summary.skipped == {"unsupported type (.xyz)": 2}
    assert s.files == list(files.values())   # skipped files too: their skip is recorded in the new manifest


def test_nothing_changed_with_an_old_manifest_missing_its_index_type_and_sources(tmp_path):
    old = manifest({})
    target = Target()
    s = sync(old, target=target)
    s.sources = []
    summary = _nothing_changed(s, IngestSummary(), 0, time.perf_counter())
    assert summary.index_type == "" and target.updated == []


def test_nothing_changed_rewrites_the_sources_of_the_manifest_it_read(tmp_path):
    old = manifest({}, sources=["/elsewhere"])
    seen = []

    class Recording:
        def update_sources(self, manifest, resolved):
            seen.append(manifest)

    s = sync(old, target=Recording())
    s.sources = [str(tmp_path)]
    _nothing_changed(s, IngestSummary(), 0, time.perf_counter())
    assert seen == [old]
