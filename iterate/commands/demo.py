"""`iterate demo`: the whole loop on the bundled demo data (what the README's first command runs)."""

from __future__ import annotations

from ._options import DEFAULT, ManifestOpt, console
from . import data


def demo(manifest: ManifestOpt = DEFAULT) -> None:
    """Run the loop on the bundled demo data: ingest, then show the plan.

    Example: iterate demo
    """
    console.rule("ingest the bundled demo data")
    data.ingest_cmd(manifest)
    console.rule("status")
    data.status(manifest)


def register(app) -> None:
    app.command("demo")(demo)
