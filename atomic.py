"""Checked, atomic output files: the one place where commands write what they keep.

:func:`check_output` runs before any work, so a bad ``--out`` costs nothing;
:func:`writing` gives a temp name beside the target and, when the block succeeds,
fsyncs it and renames it into place (``os.replace``): a reader sees the old file or the
new one, never half of one. On any failure the temp file is removed.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UserError

TEMP_PREFIX = ".ig_llm-tmp-"   # every temp name starts with this (tests look for it)
# mkstemp/mkdtemp make private (0600/0700) entries; what we keep gets the usual modes.
# The umask is read once, at import (os.umask has no read-only form and is process-wide).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _writable_folder(folder: Path, what: str, target: Path) -> None:
    """`folder` accepts a new file (a probe file is made and removed); else one sentence."""
    try:
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"Cannot write {what} {target}: the folder {folder} is not writable "
                        f"({err.strerror or err}); choose a writable folder with free space.") from None


def check_output(path, what: str = "the output", inputs=(), folder: bool = False) -> Path:
    """Check an output path before any work: a file where a file is expected (or a folder
    where `folder`), its folder writable, and not one of `inputs`. Returns it as a Path."""
    p = Path(path).expanduser()
    if folder:
        if p.exists() and not p.is_dir():
            raise UserError(f"{what} {p} is a file; give a folder.")
    elif p.is_dir():
        raise UserError(f"{what} {p} is a folder; give a file name.")
    for src in inputs:
        if src is not None and _same(p, Path(src)):
            raise UserError(f"{what} {p} is also an input; write to another path so the input survives.")
    parent = p if folder else p.parent
    # the nearest existing ancestor must be a folder we can write into
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"The folder {parent} for {what} cannot be made ({probe} is a file); "
                        "choose another path.")
    _writable_folder(probe, what, p)
    return p


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def temp_name(path: Path) -> Path:
    """A fresh temp path beside `path` (same folder, so the rename is atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)
    return Path(tmp)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fail(path: Path, err: OSError):
    return UserError(f"Cannot write {path} ({err.strerror or err}); free some space or choose a "
                     "writable folder.")


@contextlib.contextmanager
def writing(path):
    """``with writing(out) as tmp:`` write `tmp` any way you like; on success it becomes
    `out` (fsync + rename), on any failure it is removed. A failed write (disk full,
    read-only) becomes a :class:`UserError` naming `out`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(path)
    except OSError as err:
        raise _fail(path, err) from None
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as err:          # nothing half-written survives, whatever stopped us
        _remove(tmp)
        if isinstance(err, OSError):
            raise _fail(path, err) from None
        raise


def _remove(p: Path) -> None:
    with contextlib.suppress(OSError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def write_bytes(path, data: bytes) -> Path:
    with writing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, data, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(data, indent=indent))


@contextlib.contextmanager
def writing_folder(path, fsync: bool = True):
    """``with writing_folder(out) as tmp:`` fill the temp folder `tmp`; on success it
    replaces `out` (an existing folder is swapped out, then deleted), on failure it is
    removed and `out` is as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{path.name}-", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_UMASK)
    except OSError as err:
        raise _fail(path, err) from None
    try:
        yield tmp
        for f in (tmp.rglob("*") if fsync else ()):
            if f.is_file():
                _fsync(f)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{path.name}-old-", dir=path.parent))
            os.replace(path, old / path.name)
        try:
            os.replace(tmp, path)
        except OSError:
            if old is not None:   # put the previous folder back
                os.replace(old / path.name, path)
                _remove(old)
            raise
        if old is not None:
            _remove(old)
    except BaseException as err:          # nothing half-written survives, whatever stopped us
        _remove(tmp)
        if isinstance(err, OSError):
            raise _fail(path, err) from None
        raise
