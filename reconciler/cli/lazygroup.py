"""A click group whose subcommands are imported only when one is looked up.

Click's documented pattern for lazily loading subcommands ("Complex Applications" in its docs):
the group maps each command name to `module.attribute` and imports the module in
`get_command`. Invoking `reconciler validate` then imports `cli.offline` and what it needs, not
the local plane, the router or git. `--help` and shell completion go through `list_commands` and
`get_command` too, so they still see every command (a group's `--help` imports all of its
commands to print their short help).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from reconciler.cli import common


class LazyGroup(click.Group):
    """A `click.Group` whose `lazy_subcommands` ({name: "module.attribute"}) are imported on
    first look-up; commands added the usual way (`add_command`, `@group.command()`) still work."""

    def __init__(
        self, *args: Any, lazy_subcommands: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_subcommands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, cmd_name: str) -> click.Command:
        import_path = self.lazy_subcommands[cmd_name]
        module_name, attribute = import_path.rsplit(".", 1)
        with common.collector_paused():  # imports leave no garbage for it to find
            command = getattr(importlib.import_module(module_name), attribute)
        # A wrong path in the table should say which entry is wrong, not fail later in click.
        if not isinstance(command, click.Command):
            raise TypeError(f"lazy subcommand {cmd_name!r}: {import_path} is not a click command")
        return command
