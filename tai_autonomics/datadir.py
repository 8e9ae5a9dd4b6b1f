"""The data directory (ledger, keys, tokens, the daemon's lock): made sure of before anything starts.

A daemon whose data directory it cannot write would otherwise fail at its first write, deep in
the start (the lock, the dev CA, the SQLite ledger), with a traceback naming a relative path. In
a container this is the usual first mistake (a root-owned working directory, a read-only root
file system, a volume mounted for another uid), so it gets one line that says which directory,
as which user, and what to do.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tai_autonomics.errors import TaiError


class DataDirUnwritable(TaiError):
    """The data directory cannot be created or written: nothing can be stored, so nothing starts."""

    code = "data_dir_unwritable"


def ensure_writable(data_dir: Path) -> None:
    """Create ``data_dir`` if it is missing and write a file in it, or raise
    :class:`DataDirUnwritable`. Writing is the only reliable test: permission bits do not tell
    about read-only mounts, ACLs, or root."""
    path = data_dir.absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise DataDirUnwritable(
            f"the data dir {path} is not writable by uid {os.getuid()}: {exc.strerror or exc}; "
            f"give that user write access, or choose another (--data-dir, or data_dir in the release file)",
            detail={"data_dir": str(path), "uid": os.getuid()}) from None
