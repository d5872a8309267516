"""List product functions longer than a limit (issue 31: no product function over 60 lines).

    python scripts/long_functions.py [--limit 60]

Counts a function's lines from its ``def`` to its last line, docstring included; nested functions count within
their parent and on their own. Exits 1 when any is over the limit."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("iterate", "model", "annotation", "reports")


def long_functions(limit: int) -> list[tuple[str, int]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    n = node.end_lineno - start + 1
                    if n > limit:
                        out.append((f"{path.relative_to(REPO)}:{node.lineno} {node.name}", n))
    return sorted(out, key=lambda x: -x[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=60)
    args = ap.parse_args()
    found = long_functions(args.limit)
    for where, n in found:
        print(f"{n:4d}  {where}")
    print(f"long_functions={len(found)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
