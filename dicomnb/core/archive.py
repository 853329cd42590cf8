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
import struct
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
    "EntryReader",
    "cached_archive",
    "entry_error",
    "forget_archive",
    "in_archive",
    "open_archive",
    "read_entry",
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


def read_entry(path: str, name: str, sop_instance_uid: str | None = None) -> bytes:
    """The bytes of the entry ``name`` of the archive ``path`` (imported before: its password is known).

    When the archive holds that name twice, ``sop_instance_uid`` picks the entry that holds
    that instance.

    Raises
    ------
    InputError
        No such entry any more (the archive was replaced).
    PasswordRequired, WrongPassword, ArchiveError, UnreadableFileError
        The entry cannot be read.
    """
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
        return io.BytesIO(read_entry(record.path, record.member or "", record.SOPInstanceUID))
    return record.path


class EntryReader:
    """Read a stored or deflated, unencrypted entry straight from the archive's file.

    A file-like object (``read``, forward and backward ``seek``) over the entry's
    uncompressed bytes that inflates only as far as it is read: the header scanner reads
    the first kilobytes of an entry and never pays for the rest. The local header is
    checked (signature, name length) against the central directory's record.

    Parameters
    ----------
    fd : int
        A descriptor of the archive, opened for reading (``os.open``).
    offset : int
        The entry's local header offset.
    name : bytes
        The entry's name as stored.
    method : int
        0 (stored) or 8 (deflated).
    compressed, size : int
        Its compressed and uncompressed sizes (the central directory's).
    """

    _FIRST = 8192

    def __init__(self, fd: int, offset: int, name: bytes, method: int, compressed: int, size: int) -> None:
        if method not in (0, 8):
            raise ArchiveError(f"compression method {method} is read by the general reader")
        head = os.pread(fd, 30 + len(name) + 64 + self._FIRST, offset)
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            raise ArchiveError("the entry's local header is missing: the archive is damaged")
        name_length, extra_length = struct.unpack_from("<HH", head, 26)
        if name_length != len(name) or head[30 : 30 + name_length] != name:
            raise ArchiveError("the entry's local header names another file: the archive is forged")
        self._fd, self._method, self._size = fd, method, size
        self._start = offset + 30 + name_length + extra_length
        self._end = self._start + compressed
        self._first = head[30 + name_length + extra_length :]
        self._rewind()

    def _rewind(self) -> None:
        self._position = 0  # uncompressed bytes handed out so far
        self._cursor = self._start  # next compressed byte to read
        self._pending = b""  # compressed bytes read, not yet inflated
        self._inflater = zlib.decompressobj(-15) if self._method == 8 else None
        if self._first:
            self._pending, self._cursor = self._first[: self._end - self._start], min(
                self._end, self._start + len(self._first))

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` uncompressed bytes (all that is left with ``n < 0``)."""
        n = self._size - self._position if n < 0 else min(n, self._size - self._position)
        out = bytearray()
        while len(out) < n:
            if not self._pending:
                if self._cursor >= self._end:
                    break
                want = min(self._end - self._cursor, max(n - len(out), 16384))
                self._pending = os.pread(self._fd, want, self._cursor)
                if not self._pending:
                    break
                self._cursor += len(self._pending)
            if self._inflater is None:
                taken = self._pending[: n - len(out)]
                self._pending = self._pending[len(taken) :]
                out += taken
            else:
                out += self._inflater.decompress(self._pending, n - len(out))
                self._pending = self._inflater.unconsumed_tail
                if self._inflater.eof:
                    break
        self._position += len(out)
        return bytes(out)

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move to ``offset`` of the uncompressed entry (inflating up to it when forward)."""
        if whence != 0:
            raise ValueError("EntryReader seeks from the start only")
        if offset < self._position:
            self._rewind()
        while self._position < offset:
            if not self.read(min(offset - self._position, 1 << 20)):
                break
        return self._position
