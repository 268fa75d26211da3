"""`reconciler completion bash|zsh|fish`: the shell completion script, to source or install.

Click completes every command, option and choice itself once the shell calls the program with
`_RECONCILER_COMPLETE` set; this command only prints the script that does so (click's own, for
the root command as it runs), so installing it is one line (docs/commands.md) rather than an
environment variable to remember. Part of the command line (`reconciler.cli`).
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
# What click's generated script sets to ask the program for completions (`_{PROG}_COMPLETE`).
COMPLETE_VAR = "_RECONCILER_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash: echo 'eval "$(reconciler completion bash)"' >> ~/.bashrc
    zsh:  echo 'eval "$(reconciler completion zsh)"' >> ~/.zshrc
    fish: reconciler completion fish > ~/.config/fish/completions/reconciler.fish
    """
    root = ctx.find_root()
    script_class = get_completion_class(shell)
    assert script_class is not None, "click ships bash, zsh and fish"
    script = script_class(root.command, {}, "reconciler", COMPLETE_VAR)
    click.echo(script.source())
