"""Write files so that a reader never sees half of one: a temporary file beside it, then a rename.

One implementation for every file oml_viz writes that others may read while it is written
(checkpoints, cached embeddings and projections, reports, configs).

Example:
    >>> import tempfile, numpy as np
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "emb.npy") as tmp:
    ...     np.save(tmp, np.arange(3))          # the suffix is kept, so np.save adds none
    >>> np.load(folder / "emb.npy").tolist(), sorted(p.name for p in folder.iterdir())
    ([0, 1, 2], ['emb.npy'])
    >>> write_atomic(folder / "note.txt", "done").read_text()
    'done'
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from oml_viz.errors import InputFileNotFoundError

__all__ = ["atomic_path", "write_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in ``path``'s folder (same suffix) to write to; it replaces ``path`` when
    the block ends without an error and is removed when it raises. The file gets the usual
    permissions (``0o666`` less the umask), not ``mkstemp``'s private ``0o600``."""
    path = Path(path).expanduser()
    if not path.parent.is_dir():
        raise InputFileNotFoundError(f"path: folder {path.parent} does not exist")
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    tmp = Path(name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically; returns the path."""
    path = Path(path).expanduser()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path
