"""The `rung` command line: one click group; every subcommand is imported only when it is used.

`advisor/` never imports torch, transformers, faiss or langchain (a test checks `sys.modules`), so
`rung advise` starts in about the time `import click, yaml` takes.
"""

from __future__ import annotations

import sys

import click

from advisor import __version__
from advisor.errors import RungError
from advisor.lazy import LazyGroup

# command name -> "module:attribute". The test suite checks that this table and `rung --help` agree
# and that every entry imports.
COMMANDS: dict[str, str] = {
    # the advisor (pure Python)
    "ask": "advisor.commands:ask",
    "advise": "advisor.commands:advise",
    "plan": "advisor.commands:plan",
    "estimate": "advisor.commands:estimate",
    "rules": "advisor.commands:rules",
    # retrieval
    "rag": "rag.cli:rag",
    # fine-tuning and continued pretraining
    "data": "trainers.cli:data",
    "train": "trainers.cli:train",
    "merge": "trainers.cli:merge",
    "chat": "trainers.cli:chat",
    "generate": "trainers.cli:generate",
    # executing a plan
    "run": "engines.cli:run",
    "demo": "engines.cli:demo",
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="rung")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Pick the right rung of the LLM ladder, write the plan, run it.

    The journey: `rung ask` -> `rung plan` -> `rung run plan.yaml`.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Domain errors exit 2 with one line per problem; --debug re-raises."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="rung", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as error:  # RungError and click's own usage errors
        if debug:
            raise
        error.show()
        sys.exit(error.exit_code)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as error:
        if debug:
            raise
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)


__all__ = ["cli", "main", "COMMANDS", "RungError"]
