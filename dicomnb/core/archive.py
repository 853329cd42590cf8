"""Reading ZIP archives, and reading an instance wherever it is: a file or an archive entry.

Instances imported from a ZIP stay in their archive (the catalog's ``path`` is the archive,
``member`` the entry); their bytes are read from it when pixels or a dataset are asked
for. The password of an encrypted archive is kept in this process's memory once it has
opened the archive, so that its entries can be read again later; it is never written
anywhere and never shown.
"""

from __future__ import annotations

import io
import os
import threading
import zlib
from typing import TYPE_CHECKING, Any

from dicomnb.core.errors import (
    ArchiveError,
    DicomnbError,
    InputError,
    PasswordRequired,
    UnreadableFileError,
    WrongPassword,
)

if TYPE_CHECKING:
    from dicomnb.core.model import InstanceRecord

__all__ = [
    "cached_archive",
    "entry_error",
    "forget_archive",
    "in_archive",
    "open_archive",
    "read_instance",
    "remember_password",
]

_lock = threading.Lock()
_cached: tuple[tuple[str, str], Any] | None = None
_passwords: dict[str, bytes] = {}


def open_archive(path: str) -> Any:
    """Open a ZIP archive (plain, ZipCrypto or AES) for reading; :class:`ArchiveError` if unusable."""
    import pyzipper

    try:
        return pyzipper.AESZipFile(path)
    except (pyzipper.BadZipFile, EOFError, ValueError) as exc:
        raise ArchiveError(f"{path} is not a readable ZIP archive ({exc}): is the file complete?") from exc
    except OSError as exc:
        raise ArchiveError(f"cannot open {path}: {exc.strerror or exc}") from exc


def _stamp(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def cached_archive(path: str, stamp: str | None = None) -> Any:
    """The open archive at ``path``, kept open between calls (its central directory is parsed once).

    ``stamp`` (size and modification time) tells a changed archive from the one kept open.
    """
    global _cached
    stamp = stamp if stamp is not None else _stamp(path)
    with _lock:
        if _cached is not None and _cached[0] == (path, stamp):
            return _cached[1]
        if _cached is not None:
            _cached[1].close()
        archive = open_archive(path)
        _cached = ((path, stamp), archive)
        return archive


def forget_archive(path: str) -> None:
    """Close the archive at ``path`` if it is the one kept open."""
    global _cached
    with _lock:
        if _cached is not None and _cached[0][0] == path:
            _cached[1].close()
            _cached = None


def remember_password(path: str, password: bytes | None) -> None:
    """Keep the password that opened the archive at ``path``, in this process only."""
    if password is not None:
        _passwords[os.path.abspath(path)] = password


def entry_error(exc: BaseException, name: str) -> DicomnbError:
    """Turn what reading the entry ``name`` raised into the error tree."""
    import pyzipper

    if isinstance(exc, DicomnbError):
        return exc
    if isinstance(exc, RuntimeError) and "password" in str(exc).lower():
        return WrongPassword(f"the password does not open the entry {name!r}: ask for it again")
    if isinstance(exc, NotImplementedError):
        return ArchiveError(f"the entry {name!r} uses a compression method that is not supported "
                            f"({exc}); re-create the archive with deflate")
    if isinstance(exc, (pyzipper.BadZipFile, zlib.error, EOFError)):
        return ArchiveError(f"the entry {name!r} is corrupt ({exc}): the archive is damaged")
    if isinstance(exc, OSError):
        return UnreadableFileError(f"cannot read the entry {name!r}: {exc.strerror or exc}")
    return ArchiveError(f"cannot read the entry {name!r}: {exc}")


def in_archive(record: InstanceRecord) -> bool:
    """True if the instance is read from its archive (not from a copy in the cache)."""
    return record.member is not None and record.source == "zip" and record.path == record.origin


def _read_entry(path: str, name: str, sop_instance_uid: str | None) -> bytes:
    from dicomnb.core.scan import read_header_bytes

    archive = cached_archive(path)
    password = _passwords.get(os.path.abspath(path))
    candidates = [info for info in archive.infolist() if info.filename == name]
    if not candidates:
        raise InputError(f"{path} has no entry {name!r} any more: was the archive replaced? Import it again")
    for info in candidates:
        if info.flag_bits & 0x1 and password is None:
            raise PasswordRequired(f"{path} is encrypted: import it again with its password")
        try:
            data: bytes = archive.read(info, pwd=password)
        except Exception as exc:  # noqa: BLE001 - converted to the error tree
            raise entry_error(exc, name) from exc
        # Archives may hold one name twice: the instance is the entry that holds its UID.
        if len(candidates) == 1 or sop_instance_uid is None:
            return data
        try:
            if read_header_bytes(data)["SOPInstanceUID"] == sop_instance_uid:
                return data
        except DicomnbError:
            continue
    raise InputError(f"no entry {name!r} of {path} holds the instance {sop_instance_uid}")


def read_instance(record: InstanceRecord) -> io.BytesIO | str:
    """Where to read an instance from: its file's path, or its archive entry's bytes."""
    if in_archive(record):
        return io.BytesIO(_read_entry(record.path, record.member or "", record.SOPInstanceUID))
    return record.path
