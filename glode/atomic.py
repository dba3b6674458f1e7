"""Atomic file and directory writes: build under a temporary sibling, then rename into place.

A DVC stage that dies half-way must never leave a truncated output that looks complete, so
every output is written to `.{name}.tmp-{pid}` in the same directory (same filesystem, so the
final rename is atomic) and only renamed onto the real name once the writer has finished.

A writer that is stopped by an exception, Ctrl-C or SIGTERM (``glode.stagecli`` turns them into
an exception) removes its temporary path. One killed outright (SIGKILL, power loss) leaves it
behind under its hidden name; the next write of the same output removes such leftovers of dead
processes, and puts back a previous folder that was moved aside but never replaced. A write that
fails for want of disk space (or on a read-only filesystem) is an :class:`OutputError` naming the
output, after the temporary path is removed: the previous output is still there.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from glode.errors import GlodeError

__all__ = ["atomic_write_bytes", "atomic_path", "atomic_dir", "temp_sibling", "clean_stale", "write_json",
           "OutputError", "check_output_file"]

#: errno values of a write that failed for want of space or of a writable filesystem
WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


class OutputError(GlodeError):
    """An output that could not be written (disk full, read-only filesystem) or may not be;
    ``reason`` is the filesystem's word for a failed write (None for a refused path)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason


def _write_failure(path: Path, exc: BaseException) -> OutputError | None:
    """The error to raise instead of ``exc`` when it is a failed write of ``path`` (or of a file
    inside the folder ``path``, whose writer named only its own temporary file), else None."""
    if isinstance(exc, OutputError) and exc.reason is not None:
        reason = exc.reason
    elif isinstance(exc, OSError) and exc.errno in WRITE_FAILURES:
        reason = exc.strerror or str(exc)
    else:
        return None
    kept = (f"the previous version of {path.name} is unchanged" if path.exists() or path.is_symlink()
            else "nothing was written")
    return OutputError(f"{path}: writing failed ({reason}); the partial output was removed and {kept}; "
                       "free some space (or write elsewhere) and run again", reason)


def check_output_file(path: str | Path, force: bool = False, option: str = "--out") -> Path:
    """Refuse a file output path before any work is done: an existing directory, a parent that is
    a file, or (without ``force``) an existing file, which would be overwritten silently."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give {option} a file name (e.g. {path / 'out.txt'})")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{path}: {parent} is a file, not a folder; give {option} a path in a folder")
    if (path.exists() or path.is_symlink()) and not force:
        raise OutputError(f"{path}: exists; pass --force to overwrite it, or give {option} another file name")
    return path


def temp_sibling(path: str | Path, tag: str = "tmp") -> Path:
    """The hidden sibling used while `path` is being written (per process, so writers don't clash)."""
    path = Path(path)
    return path.parent / f".{path.name}.{tag}-{os.getpid()}"


def _remove(p: Path) -> None:
    """Delete a file, link or directory tree if present (cleanup must not raise for a missing path)."""
    if p.is_symlink() or p.is_file():
        p.unlink(missing_ok=True)
    elif p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def clean_stale(path: str | Path) -> list[Path]:
    """Remove the temporary siblings of ``path`` left by writers that no longer run.

    A ``.{name}.old-{pid}`` folder of a dead writer is the complete previous output that was
    moved aside just before the kill: it is put back when ``path`` is missing. Returns what
    was removed or restored.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(tmp|old)-(\d+)$")
    done = []
    for entry in sorted(path.parent.iterdir()):
        m = pattern.match(entry.name)
        if not m or _alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not (path.exists() or path.is_symlink()):
            os.replace(entry, path)
        else:
            _remove(entry)
        done.append(entry)
    return done


def _fsync_dir(directory: Path) -> None:
    """Persist a rename on filesystems that need the directory synced (best effort; not on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write a file to; it replaces `path` only on success.

    The block must create the file at the yielded path. If the block raises, the temporary file
    is removed and any existing `path` is left untouched. Parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = temp_sibling(path)
    _remove(tmp)  # left over from a crashed run of a process that had the same pid
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic_path: the block did not create {tmp} (meant for {path})")
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        failure = _write_failure(path, exc)
        if failure is not None:
            raise failure from exc
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (fsynced before the rename); returns `path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def write_json(path: str | Path, obj) -> None:
    """Pretty, key-sorted JSON written atomically (stable bytes for DVC)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh, empty temporary directory; it replaces the directory `path` only on success.

    An existing `path` (directory or file) is moved aside, the new directory renamed in, and only
    then is the old one deleted, so readers see either the complete old or the complete new
    folder. If the block raises, the temporary directory is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = temp_sibling(path)
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if not tmp.is_dir():
            raise FileNotFoundError(f"atomic_dir: the temporary directory {tmp} disappeared (meant for {path})")
        old = None
        if path.exists() or path.is_symlink():
            old = temp_sibling(path, "old")
            _remove(old)
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)  # put the previous version back
            raise
    except BaseException as exc:
        _remove(tmp)
        failure = _write_failure(path, exc)
        if failure is not None:
            raise failure from exc
        raise
    _fsync_dir(path.parent)
    if old is not None:
        _remove(old)
