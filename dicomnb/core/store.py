"""Where files written by dicomnb land: the cache, safe names and atomic writes.

Nothing dicomnb writes ever takes its name from untrusted input unchanged (archive
entry names, UIDs, attributes): names go through :func:`safe_name` /
:func:`safe_relative_path`, and every file is written to a temporary name in the same
folder and renamed into place, so a file is visible under its final name only complete.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from dicomnb.core.errors import UnsafePathError
from dicomnb.core.settings import settings

__all__ = [
    "atomic_write",
    "atomic_writer",
    "cache_folder",
    "check_relative_name",
    "instance_file_name",
    "instance_path",
    "key_for",
    "relative_parts",
    "safe_name",
    "safe_relative_path",
    "series_folder",
    "store_folder",
]

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+\-]")
_DRIVE = re.compile(r"^[A-Za-z]:")


def cache_folder(*parts: str) -> Path:
    """Return (and create) a folder inside dicomnb's cache."""
    folder = Path(settings.cache_dir).joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def key_for(*parts: object) -> str:
    """A short stable key (hex) for naming a cache folder after some values."""
    return hashlib.sha256("\x00".join(map(str, parts)).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def instance_path(study_uid: str, series_uid: str, sop_instance_uid: str, root: Path | None = None) -> Path:
    """Where a retrieved instance lives in the local store.

    ``<cache_dir>/store/<study key>/<series key>/<instance key>.dcm`` (or under ``root``):
    each key is a hash of the UIDs (:func:`key_for`), so a UID an archive sends, however
    long or odd, never becomes a path, and the same instance always lands in the same file.
    The folders are not created here.
    """
    return series_folder(study_uid, series_uid, root) / instance_file_name(sop_instance_uid)


def store_folder() -> Path:
    """``<cache_dir>/store``: where retrieved instances live (not created here)."""
    return Path(settings.cache_dir) / "store"


def series_folder(study_uid: str, series_uid: str, root: Path | None = None) -> Path:
    """The store's folder of a series: where :func:`instance_path` puts its instances."""
    return _series_folder(os.fspath(root if root is not None else store_folder()), study_uid, series_uid)


@functools.lru_cache(maxsize=1024)
def _series_folder(base: str, study_uid: str, series_uid: str) -> Path:
    # each instance that lands asks for it: hashed once per series, not once per instance
    return Path(base) / key_for("study", study_uid) / key_for("series", study_uid, series_uid)


def instance_file_name(sop_instance_uid: str) -> str:
    """The name of an instance's file in its series' folder (:func:`series_folder`)."""
    return f"{key_for('instance', sop_instance_uid)}.dcm"


def safe_name(name: str, default: str = "file") -> str:
    """Return ``name`` reduced to a harmless file name (letters, digits, ``._+-``)."""
    cleaned = _UNSAFE_CHARS.sub("_", name).strip("._") or default
    return cleaned[:120]


def check_relative_name(name: str) -> PurePosixPath:
    """Return an archive or media name as a relative path, or raise :class:`UnsafePathError`.

    Refused: absolute names, drive letters (``C:``), ``..`` components, NUL bytes, and
    names that are empty once ``.`` components are dropped.
    """
    return PurePosixPath(*relative_parts(name))


def relative_parts(name: str) -> list[str]:
    """The components of a safe relative name (see :func:`check_relative_name`), as strings.

    The same checks without building a path object: an archive of many entries is checked
    name by name before anything is read.
    """
    normalised = name.replace("\\", "/")
    if "\x00" in normalised:
        raise UnsafePathError(f"the name {name!r} contains a NUL byte")
    if normalised.startswith("/") or _DRIVE.match(normalised):
        raise UnsafePathError(f"the name {name!r} is absolute: refused, it could be written anywhere")
    parts = [part for part in normalised.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"the name {name!r} climbs out of its folder with '..': refused")
    if not parts:
        raise UnsafePathError(f"the name {name!r} names no file")
    return parts


def safe_relative_path(name: str, taken: set[str]) -> PurePosixPath:
    """Return a safe relative path for ``name`` that no other name in ``taken`` maps to.

    Each component goes through :func:`safe_name`; a path already taken (compared without
    case, so case-colliding names stay apart on any file system) gets a ``~N`` suffix.
    ``taken`` is updated.
    """
    parts = [safe_name(part) for part in relative_parts(name)]
    candidate = PurePosixPath(*parts)
    stem, suffix = os.path.splitext(parts[-1])
    number = 1
    while str(candidate).lower() in taken:
        number += 1
        candidate = PurePosixPath(*parts[:-1], f"{stem}~{number}{suffix}")
    taken.add(str(candidate).lower())
    return candidate


class atomic_writer:  # noqa: N801 - used like open()
    """Write a file under a temporary name in its folder, renamed into place on success.

    >>> with atomic_writer(path) as f:
    ...     f.write(data)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.temporary = tempfile.mkstemp(prefix=".part-", dir=self.path.parent)
        self.file = os.fdopen(fd, "wb")

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        self.file.close()
        if exc_type is None:
            os.replace(self.temporary, self.path)
        else:
            os.unlink(self.temporary)


def atomic_write(path: str | os.PathLike[str], chunks: Iterable[bytes] | bytes) -> int:
    """Write ``chunks`` to ``path`` atomically; return the number of bytes written."""
    written = 0
    with atomic_writer(path) as f:
        for chunk in [chunks] if isinstance(chunks, bytes) else chunks:
            f.write(chunk)
            written += len(chunk)
    return written
