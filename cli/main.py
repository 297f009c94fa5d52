"""The `rung` command line: one click group; every subcommand is imported only when it is used.

`advisor/` never imports torch, transformers, faiss or langchain (a test checks `sys.modules`), so
`rung advise` starts in about the time `import click, yaml` takes.
"""

from __future__ import annotations

import sys

import click

from rung import __version__
from rung.core.errors import RungError
from rung.core.lazy import LazyGroup
import rung.trainers  # noqa: F401  registers builtin:tiny-base (cheap: no torch)

# command name -> "module:attribute". The test suite checks that this table and `rung --help` agree
# and that every entry imports.
COMMANDS: dict[str, str] = {
    # the advisor (pure Python)
    "ask": "rung.cli.ask:ask",
    "advise": "rung.advisor.commands:advise",
    "plan": "rung.advisor.commands:plan",
    "estimate": "rung.advisor.commands:estimate",
    "rules": "rung.advisor.commands:rules",
    # retrieval
    "rag": "rung.rag.cli:rag",
    # fine-tuning and continued pretraining
    "data": "rung.trainers.cli:data",
    "train": "rung.cli.train:train",          # the trainers' group + grpo (its reward is an engines metric)
    "merge": "rung.trainers.cli:merge",
    "chat": "rung.trainers.cli:chat",
    "generate": "rung.trainers.cli:generate",
    "export": "rung.cli.export:export",
    "serve": "rung.cli.serve:serve",
    # measuring: the cheap rungs on your model, and the trained model against them
    "probe": "rung.cli.measure:probe",
    "gate": "rung.cli.measure:gate",
    # executing a plan
    "run": "rung.cli.run:run",
    "demo": "rung.cli.run:demo",
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
    except OSError as error:  # any file-system failure a command did not turn into a RungError itself
        if debug:
            raise
        from rung.core.fileio import ERRNO_TEXT

        reason = ERRNO_TEXT.get(error.errno or 0) or error.strerror or type(error).__name__
        where = f"{error.filename}: " if error.filename else ""
        click.echo(f"Error: {where}{reason}", err=True)
        sys.exit(2)


__all__ = ["cli", "main", "COMMANDS", "RungError"]
