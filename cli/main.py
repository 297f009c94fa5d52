"""The `rung` command line: one click group; every subcommand is imported only when it is used.

`advisor/` never imports torch, transformers, faiss or langchain (a test checks `sys.modules`), so
`rung advise` starts in about the time `import click, yaml` takes.
"""

from __future__ import annotations

import sys

import click

from rung import __version__
from rung.cli.lazy import CommandError, LazyGroup
from rung.core.errors import RungError
import rung.trainers  # noqa: F401  registers builtin:tiny-base (cheap: no torch)

# command name -> "module:attribute". The test suite checks that this table and `rung --help` agree
# and that every entry imports.
COMMANDS: dict[str, str] = {
    # the advisor (pure Python)
    "ask": "rung.cli.ask:ask",
    "advise": "rung.cli.advise:advise",
    "plan": "rung.cli.advise:plan",
    "estimate": "rung.cli.advise:estimate",
    "rules": "rung.cli.advise:rules",
    # retrieval
    "rag": "rung.cli.rag:rag",
    # fine-tuning and continued pretraining
    "data": "rung.cli.data:data",
    "train": "rung.cli.train:train",
    "merge": "rung.cli.chat:merge",
    "chat": "rung.cli.chat:chat",
    "generate": "rung.cli.chat:generate",
    "export": "rung.cli.export:export",
    "serve": "rung.cli.serve:serve",
    # measuring: the cheap rungs on your model, and the trained model against them
    "probe": "rung.cli.measure:probe",
    "gate": "rung.cli.measure:gate",
    # executing a plan
    "run": "rung.cli.run:run",
    "demo": "rung.cli.demo:demo",
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
    """Console-script entry point. Domain errors exit 2 with one line per problem; --debug re-raises.

    Exit codes: 0 done (SHIP), 1 the gate's DON'T SHIP and nothing else, 2 bad input or a failure rung
    explains, 3 a server (`rung serve`) that did not come up or stopped on its own, 130 interrupted (Ctrl-C).
    Every message is scrubbed of the values of secret-looking environment variables (core/secrets.py)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="rung", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort as error:
        interrupted = isinstance(error.__context__ or error.__cause__, KeyboardInterrupt)
        click.echo("Interrupted." if interrupted else "Aborted.", err=True)
        sys.exit(130 if interrupted else 2)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except (click.ClickException, RungError) as error:  # a RungError (cli/lazy.py) and click's usage errors
        if debug:
            raise
        error = error if isinstance(error, click.ClickException) else CommandError(error.message)
        error.message = _scrubbed(error.message)
        error.show()
        sys.exit(error.exit_code)
    except OSError as error:  # any file-system failure a command did not turn into a RungError itself
        if debug:
            raise
        from rung.core.fileio import ERRNO_TEXT

        reason = ERRNO_TEXT.get(error.errno or 0) or error.strerror or type(error).__name__
        where = f"{error.filename}: " if error.filename else ""
        click.echo(_scrubbed(f"Error: {where}{reason}"), err=True)
        sys.exit(2)
    except Exception as error:  # noqa: BLE001 - a bug, still never a traceback (exit 1 is the gate's alone)
        if debug:
            raise
        text = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        click.echo(_scrubbed(f"Error: unexpected {text} (a bug in rung: rerun with --debug for the traceback "
                             "and report it)"), err=True)
        sys.exit(2)


SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")


def _scrubbed(text: str) -> str:
    """text without the value of any environment variable whose name says it holds a secret."""
    import os

    from rung.core.secrets import scrub

    secrets = [value for name, value in os.environ.items()
               if any(part in name.upper() for part in SECRET_NAME_PARTS) and len(value) >= 8]
    text = scrub(text, *secrets) if secrets else text
    # a name holding terminal escapes (a file called "\x1b[2J...") must not drive the user's terminal
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


__all__ = ["cli", "main", "COMMANDS", "RungError"]
