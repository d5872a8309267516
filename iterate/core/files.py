"""Files the loop writes whole: a temporary beside the target, then a rename, so a crash leaves the old file or
the new one; a full disk or a file-size limit is one line naming the file, and the temporary is removed."""

from __future__ import annotations

import os
from pathlib import Path

from iterate.core.errors import IterateError

__all__ = ["write_bytes_atomic"]


def write_bytes_atomic(path: str | Path, data: bytes, what: str = "file") -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise IterateError(
            f"{path}: the {what} could not be written ({e.strerror or type(e).__name__}): free disk space and "
            "re-run (what was written before is kept)"
        ) from None
