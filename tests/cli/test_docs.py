"""The generated reference pages (docs/cli.md, docs/rules.md) match the code: `make docs` leaves no diff."""

from __future__ import annotations


def test_committed_reference_pages_are_current():
    from rung.cli.docs import stale_pages

    assert stale_pages() == [], "run `make docs` and commit docs/cli.md and docs/rules.md"


def test_the_cli_page_covers_every_command_and_subcommand():
    from rung.cli.docs import cli_reference
    from rung.cli.main import COMMANDS

    page = cli_reference()
    for name in COMMANDS:
        assert f"## `rung {name}`" in page
    for sub in ("rung rag index", "rung rag query", "rung train sft", "rung train dpo", "rung train cpt",
                "rung data check"):
        assert f"## `{sub}`" in page


def test_a_changed_help_text_makes_the_page_stale(monkeypatch, tmp_path):
    from rung.cli import docs

    monkeypatch.setattr(docs, "DOCS", tmp_path)
    assert len(docs.stale_pages()) == 2  # nothing written yet
    docs.main([])
    assert docs.stale_pages() == []
    (tmp_path / "cli.md").write_text((tmp_path / "cli.md").read_text() + "edited\n")
    assert docs.stale_pages() == [tmp_path / "cli.md"]
