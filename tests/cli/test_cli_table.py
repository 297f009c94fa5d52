"""The command table in cli/main.py and the CLI agree; every command and subcommand has working --help."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest

from rung.cli.main import COMMANDS, cli

HEAVY = ("torch", "transformers", "trl", "peft", "faiss", "sentence_transformers", "langchain",
         "langchain_core", "datasets", "accelerate")


def _all_commands(group: click.Group, ctx: click.Context, prefix=()):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _all_commands(command, ctx, prefix + (name,))


def test_table_entries_import_and_are_commands():
    for name, target in COMMANDS.items():
        module, attribute = target.split(":")
        assert isinstance(getattr(importlib.import_module(module), attribute), click.Command), name


def test_top_level_help_lists_exactly_the_table(rung):
    result = rung("--help")
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(COMMANDS)


def test_every_command_has_help_and_every_option_is_documented(rung):
    ctx = click.Context(cli)
    seen = 0
    for path, command in _all_commands(cli, ctx):
        result = rung(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert (command.help or command.short_help), f"{' '.join(path)} has no help text"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"rung {' '.join(path)} {param.opts[0]} has no help"
        seen += 1
    assert seen >= len(COMMANDS)


def test_version(rung):
    result = rung("--version")
    assert result.exit_code == 0 and "rung" in result.output


@pytest.mark.parametrize("argv", [["--help"], ["rules"], ["rag", "--help"], ["train", "--help"]])
def test_cli_start_up_imports_no_heavy_library(argv):
    """Help and the advisor must not pay for torch & co. (the libraries load inside command bodies)."""
    code = (
        "import sys\n"
        "from rung.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "HEAVY []" in out, out[-500:]
