"""Files the operator commands write: exports that never clobber by accident.

`export_target()` checks the path before any work: an existing file needs --force, and the
database itself (its -wal, -shm and -journal too) is refused even with --force, compared by
resolved real path and by inode. `ExportFile` writes a temporary file in the same folder,
mode 0600 whatever the umask, and renames it over the target only when the export
succeeded; a failed or interrupted export leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from dataclasses import dataclass
from typing import TextIO

from gateway.admin_rows import InputError

FILE_MODE = 0o600
DATABASE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def database_files(database_path: str | None) -> list[str]:
    """The database file and its companions (real paths); [] for PostgreSQL or :memory:."""
    if not database_path or database_path == ":memory:":
        return []
    real = os.path.realpath(database_path)
    return [real + suffix for suffix in DATABASE_SUFFIXES]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class ExportTarget:
    path: str  # as the operator gave it
    force: bool


def export_target(path: str, *, force: bool, database_path: str | None) -> ExportTarget:
    """A checked output path, or InputError (one line, exit 2)."""
    real = os.path.realpath(path)
    for protected in database_files(database_path):
        if real == protected or _same_file(path, protected):
            raise InputError(f"{path}: is the database file {protected}; refusing to overwrite it"
                             " (even with --force)")
    if os.path.isdir(real):
        raise InputError(f"{path}: is a directory")
    if os.path.lexists(path) and not force:
        raise InputError(f"{path}: file exists (--force replaces it)")
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise InputError(f"{path}: folder {folder} does not exist")
    return ExportTarget(path, force)


class ExportFile:
    """Context manager: a text stream on a 0600 temporary file, renamed into place on success."""

    def __init__(self, target: ExportTarget) -> None:
        self.target = target
        self.real = os.path.realpath(target.path)
        self._tmp: str | None = None
        self.stream: TextIO | None = None

    def __enter__(self) -> TextIO:
        folder, name = os.path.split(self.real)
        try:
            fd, self._tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise InputError(f"{self.target.path}: {exc.strerror or exc}") from None
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600 already; say it where it matters
        self.stream = open(fd, "w", encoding="utf-8", newline="")  # closed in __exit__
        return self.stream

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self.stream is not None and self._tmp is not None
        tmp, self._tmp = self._tmp, None
        try:
            if exc_type is None:
                self.stream.flush()
                os.fsync(self.stream.fileno())
            self.stream.close()
            if exc_type is None:
                self._place(tmp)
                tmp = ""
        finally:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _place(self, tmp: str) -> None:
        """Rename tmp over the target; without --force never over a file that appeared meanwhile."""
        try:
            if self.target.force:
                os.replace(tmp, self.real)
            else:
                _link(tmp, self.real)
        except FileExistsError:
            raise InputError(f"{self.target.path}: file exists (--force replaces it)") from None
        except OSError as exc:
            raise InputError(f"{self.target.path}: {exc.strerror or exc}") from None
        _sync_folder(os.path.dirname(self.real))


def _link(tmp: str, real: str) -> None:
    """tmp becomes real only if real does not exist (a hard link fails on an existing name)."""
    try:
        os.link(tmp, real)
    except FileExistsError:
        raise
    except OSError as exc:  # a filesystem without hard links: check, then rename
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        if os.path.lexists(real):
            raise FileExistsError(real) from None
        os.replace(tmp, real)
        return
    os.unlink(tmp)


def _sync_folder(folder: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

