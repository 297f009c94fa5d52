"""Finding, reading and parsing source files: every bad file is skipped with a reason, never a crash."""

from __future__ import annotations

import io

from rung.rag import loaders


def make_pdf(text: str | None) -> bytes:
    """A one-page PDF; with text=None the page has no text layer (like a scan)."""
    if text is None:
        from pypdf import PdfWriter

        writer = PdfWriter()
        writer.add_blank_page(200, 200)
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()
    stream = f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def load(tmp_path, files: dict[str, bytes | str]):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    found, problems = loaders.find_files([tmp_path])
    assert problems == []
    result = {}
    for f in found:
        loaders.read_and_hash(f)
        sections = loaders.parse(f) if f.skip is None else []
        result[f.source] = (f.skip, sections)
    return result


def test_bad_files_are_skipped_with_reasons(tmp_path):
    (tmp_path / "gone.md").symlink_to(tmp_path / "nowhere.md")  # a dangling link: unreadable
    result = load(tmp_path, {
        "ok.md": "# Title\n\nSome text.\n",
        "binary.txt": b"\x00\x01\x02 not text",
        "latin1.txt": "caf\xe9 cr\xe8me".encode("latin-1"),
        "blank.md": "   \n\n",
        "scan.pdf": make_pdf(None),
        "text.pdf": make_pdf("Refunds take five business days"),
        "broken.pdf": b"%PDF-1.4 this is not really a pdf",
        "image.png": b"\x89PNG\r\n",
        "records.jsonl": '{"_id": "r1", "title": "T", "text": "first record"}\nnot json\n{"text": ""}\n{"text": "second"}\n',
        "empty.jsonl": '{"title": "no text"}\n',
        ".hidden.md": "secret",
    })
    reasons = {source: skip for source, (skip, _) in result.items()}
    assert reasons == {
        "ok.md": None, "gone.md": reasons["gone.md"], "binary.txt": "binary", "latin1.txt": "not UTF-8 text",
        "blank.md": "empty", "scan.pdf": "PDF without a text layer", "text.pdf": None,
        "broken.pdf": reasons["broken.pdf"], "image.png": "unsupported type (.png)", "records.jsonl": None,
        "empty.jsonl": "no JSON lines with a text field",
    }
    assert reasons["gone.md"].startswith("unreadable")
    assert reasons["broken.pdf"].startswith(("unreadable PDF", "PDF without a text layer"))
    pdf = result["text.pdf"][1]
    assert len(pdf) == 1 and pdf[0].page == 1 and "Refunds take five business days" in pdf[0].text
    records = result["records.jsonl"][1]
    assert [(s.doc, s.first_line, s.title, s.text) for s in records] == [
        ("r1", 1, "T", "first record"), ("records.jsonl#4", 4, None, "second")]


def test_folder_files_are_named_relative_to_the_folder(tmp_path):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "a" / "sub" / "x.md").write_text("x")
    (tmp_path / "b.txt").write_text("b")
    files, problems = loaders.find_files([tmp_path / "a"])
    assert [f.source for f in files] == ["sub/x.md"] and problems == []
    files, problems = loaders.find_files([tmp_path / "a", tmp_path / "b.txt", tmp_path / "missing"])
    assert [f.source for f in files] == ["a/sub/x.md", "b.txt"]
    assert problems == [f"{tmp_path / 'missing'}: no such file or folder"]


def test_html_becomes_text_with_headings_and_source_lines():
    html = ("<html><head><title>Doc</title><style>p {}</style></head>\n<body>\n<h1>Install</h1>\n"
            "<p>Run the\ninstaller.</p>\n<script>var x = 1;</script>\n<h2>Linux</h2>\n<ul><li>deb</li>\n<li>rpm</li></ul>\n"
            "</body></html>")
    text, line_map, title = loaders.html_to_text(html)
    assert title == "Doc"
    assert text.split("\n") == ["# Install", "", "Run the installer.", "", "## Linux", "", "- deb", "- rpm"]
    assert "var x" not in text and "p {}" not in text
    lines = dict(zip(text.split("\n"), line_map))
    assert lines["# Install"] == 3 and lines["Run the installer."] == 4 and lines["## Linux"] == 7 and lines["- rpm"] == 9


def test_heading_trails_for_markdown_and_rst():
    md = "# A\ntext\n```\n# not a heading\n```\n## B\nmore\nC\n---\n# D\n"
    assert loaders.headings(md, "markdown") == [(0, "A"), (5, "A > B"), (7, "A > C"), (9, "D")]  # C is a setext level-2 heading
    rst = "Title\n=====\n\nIntro\n\nPart one\n--------\n\nx\n\nPart two\n--------\n"
    assert loaders.headings(rst, "rst") == [(0, "Title"), (5, "Title > Part one"), (10, "Title > Part two")]


def test_importing_the_cli_loads_no_heavy_modules():
    import subprocess
    import sys

    code = ("import sys, rung.cli.rag; heavy = [m for m in ('torch', 'faiss', 'sentence_transformers', 'langchain_core', "
            "'transformers', 'numpy') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
