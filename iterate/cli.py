"""The `iterate` command line: one Typer app, one module per command group under `iterate/commands/`.

Known errors (:class:`iterate.core.errors.IterateError`) become one line on stderr and exit code 2; no traceback.
"""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from iterate.core.errors import IterateError

err_console = Console(stderr=True)


def _one_line(text: str) -> str:
    """Control characters (a newline, or a record separator inside a field name from the user's file) written as
    escapes: the error stays one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class _Group(TyperGroup):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except IterateError as e:
            err_console.print(f"[bold red]error:[/] {escape(_one_line(str(e)))}", highlight=False, soft_wrap=True)
            sys.exit(e.exit_code)
        except EOFError as e:  # click would print only "Aborted!": say what ended early instead
            err_console.print(
                f"[bold red]error:[/] a file ended before its end (EOFError: {escape(_one_line(str(e)) or 'no detail')}): "
                "a truncated cache or data file; run the command again, and report it if it repeats",
                highlight=False,
                soft_wrap=True,
            )
            sys.exit(1)
        except KeyboardInterrupt:
            err_console.print("interrupted: the ledger keeps every completed step; re-run to continue")
            sys.exit(130)


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Active-learning data loop for keypoint models: select → label in Label Studio → sync-labels → retrain → report.",
)


def _register() -> None:
    from iterate.commands import audit, data, demo, export, model, report, select, simulate, studio

    audit.register(app)
    data.register(app)
    export.register(app)
    select.register(app)
    model.register(app)
    report.register(app)
    simulate.register(app)
    studio.register(app)
    demo.register(app)


_register()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
