"""A click group whose subcommands live in other modules and are imported only when used, and which turns the
library's domain error (core/errors.py RungError) into click's: `Error: <message>` on stderr, exit code 2.

Lazy loading keeps `rung advise` from paying for torch, transformers or faiss imports it never needs.
"""

from __future__ import annotations

import importlib

import click

from rung.core.errors import RungError


class CommandError(click.ClickException):
    """A RungError as the command line shows it (cli/main.py scrubs secrets from the message first)."""

    exit_code = 2


class LazyGroup(click.Group):
    """`lazy_commands` maps a command name to "package.module:attribute"."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RungError as error:
            raise CommandError(error.message) from error

    def _load(self, cmd_name: str) -> click.Command:
        module_name, attribute = self.lazy_commands[cmd_name].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy_commands[cmd_name]} is not a click command")
        return command
