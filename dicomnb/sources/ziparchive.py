"""DICOM ZIP archives: stored or deflated, plain or encrypted (ZipCrypto, AES).

The archive is never extracted wholesale and never modified. By default its instances stay
in it: each entry's header is read straight from the archive, as far as the header scanner
needs, and the catalog records the archive as ``path`` and the entry as ``member`` (pixels
are read from the entry when asked for). With ``copy=True``, and always for an archive that
holds DICOMDIR media, entries land one by one in dicomnb's cache instead.

Before anything is read, the archive is checked as a whole:

* every entry's data must lie where the central directory says, one after the other
  (an *overlapping-entry* bomb points many entries at the same compressed bytes);
* the number of entries, the total uncompressed size, and the compression ratio of each
  entry and of the whole archive are capped (``settings.zip_max_*``): a 1 MB entry that
  claims 1 GiB is refused, and an entry can never yield more than its declared size;
* an encrypted archive needs a password (:class:`PasswordRequired`), which is tried on one
  entry first (:class:`WrongPassword`), so that a dialog can ask again.

Names are checked (``..``, absolute and drive-letter names are refused: nothing is ever
written outside the cache); landed duplicate and case-colliding names all land, with a
``~N`` suffix. Landed files that are neither DICOM nor images are not kept, except in an
archive that holds a DICOMDIR, where they are attachments of its media.

A DICOMDIR at the root of the archive or in a sub-folder is used as the DICOMDIR source
does for a folder: its records decide what is imported, the rest of its media is listed
as attachments.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import shutil
import stat
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from dicomnb.core.archive import EntryReader, cached_archive, entry_error, forget_archive, remember_password
from dicomnb.core.classify import classify_file, classify_head
from dicomnb.core.errors import ArchiveError, DicomnbError, PasswordRequired, WrongPassword
from dicomnb.core.model import (
    AttachmentRecord,
    ErrorRecord,
    ImageRecord,
    InstanceRecord,
    Item,
    SkippedRecord,
)
from dicomnb.core.parallel import map_batches
from dicomnb.core.scan import FIRST_READ
from dicomnb.core.settings import settings
from dicomnb.core.store import atomic_writer, cache_folder, key_for, relative_parts, safe_relative_path

__all__ = ["ZipSource"]

LOGGER = logging.getLogger(__name__)

_BATCH = 128
_COPY_CHUNK = 1024 * 1024
_LOCAL_HEADER_SIZE = 30  # fixed part of a local file header
_ENCRYPTED = 0x1


@dataclass(frozen=True)
class _Job:
    """One entry: its index and name, the cache file it lands in (if it does), and, read in
    place, where its bytes are (so that worker processes need not parse the archive)."""

    index: int
    name: str
    target: str = ""
    offset: int = 0
    stored_name: bytes = b""
    method: int = 0
    compressed: int = 0
    size: int = 0
    plain: bool = False  # stored or deflated, not encrypted: read without the ZIP library


def _stored_name(info: Any) -> bytes:
    """The entry's name as its headers store it (UTF-8 when flagged, else code page 437)."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "surrogateescape")


def _base_name(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def _read_batch(path: str, stamp: str, password: bytes | None, jobs: Sequence[_Job], origin: str) -> list[Item]:
    """Say what each entry of a batch is, reading it in the archive (the function workers run).

    Only the bytes the header scanner needs are inflated; the declared size of the entry
    stands for the size of the file (a file cut short before it was zipped is caught).
    """
    items: list[Item] = []
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        for job in jobs:
            try:
                if job.plain:
                    item = _read_plain(fd, job, path, origin)
                else:
                    item = _read_with_library(cached_archive(path, stamp), job, password, path, origin)
            except Exception as exc:  # noqa: BLE001 - each entry's failure is its own error record
                item = ErrorRecord.from_exception(path, entry_error(exc, job.name), source="zip",
                                                  origin=origin, member=job.name)
            items.append(item)
    finally:
        os.close(fd)
    return items


def _read_plain(fd: int, job: _Job, path: str, origin: str) -> Item:
    def reader() -> EntryReader:
        return EntryReader(fd, job.offset, job.stored_name, job.method, job.compressed, job.size)

    stream = reader()
    head = stream.read(FIRST_READ)
    return classify_head(head, job.size, stream, lambda: io.BytesIO(reader().read()),  # type: ignore[arg-type]
                         path, "zip", origin, job.name)


def _read_with_library(archive: Any, job: _Job, password: bytes | None, path: str, origin: str) -> Item:
    info = archive.infolist()[job.index]
    with archive.open(info, pwd=password) as stream:
        head = stream.read(FIRST_READ)
        return classify_head(head, info.file_size, stream, lambda: io.BytesIO(archive.read(info, pwd=password)),
                             path, "zip", origin, job.name)


def _land(archive: Any, info: Any, target: str, password: bytes | None) -> None:
    """Copy one entry to ``target`` (atomically), unless an identical copy is there already."""
    try:
        if os.path.getsize(target) == info.file_size:
            return  # landed by an earlier import of this very archive (the cache key says so)
    except OSError:
        pass
    with archive.open(info, pwd=password) as src, atomic_writer(target) as dst:
        shutil.copyfileobj(src, dst, _COPY_CHUNK)


def _land_batch(
    path: str, stamp: str, password: bytes | None, jobs: Sequence[_Job], keep_all: bool, origin: str,
    classify: bool,
) -> list[Item]:
    """Land a batch of entries and say what each is (the function worker processes run).

    With ``classify`` false (the archive has a DICOMDIR, which decides later) every entry is
    kept and reported as a :class:`SkippedRecord` carrying its target path.
    """
    archive = cached_archive(path, stamp)
    infos = archive.infolist()
    items: list[Item] = []
    for job in jobs:
        try:
            _land(archive, infos[job.index], job.target, password)
        except Exception as exc:  # noqa: BLE001 - each entry's failure is its own error record
            items.append(ErrorRecord.from_exception(path, entry_error(exc, job.name), source="zip",
                                                    origin=origin, member=job.name))
            continue
        if not classify:
            items.append(SkippedRecord(job.target, "landed"))
            continue
        item = classify_file(job.target, "zip", origin, job.name)
        if isinstance(item, SkippedRecord):
            if not keep_all:
                os.unlink(job.target)
            item = SkippedRecord(f"{path}::{job.name}", item.reason)
        items.append(item)
    return items


class ZipSource:
    """A DICOM ZIP archive.

    Parameters
    ----------
    path : path
        The archive.
    password : str or bytes, optional
        For encrypted archives (ZipCrypto or AES).
    copy : bool
        Land the entries in dicomnb's cache (the catalog's ``path`` is then a file of the
        cache) rather than reading them in the archive (``path`` is the archive). An
        archive holding DICOMDIR media is always landed.

    Raises
    ------
    PasswordRequired
        The archive is encrypted and no password was given.
    WrongPassword
        The password does not open it.
    ArchiveError
        The archive is not a readable ZIP, or is refused as unsafe (a zip bomb,
        overlapping entries, more than the configured size or number of entries).
    """

    kind = "zip"

    def __init__(self, path: str | os.PathLike[str], password: str | bytes | None = None, *,
                 copy: bool = False) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.origin = self.path
        self.copy = copy
        self._password = password.encode("utf-8") if isinstance(password, str) else password
        self._trees: list[Any] = []
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise ArchiveError(f"cannot open {self.path}: {exc.strerror or exc}") from exc
        self._stamp = f"{st.st_size}:{st.st_mtime_ns}"
        # Opened once: the checks and the reading (in this process) share its central directory.
        archive = cached_archive(self.path, self._stamp)
        try:
            self._infos = archive.infolist()
            entries = [(i, info) for i, info in enumerate(self._infos) if not info.is_dir()]
            self._check_layout(archive.start_dir, st.st_size)
            total = self._check_sizes([info for _, info in entries], st.st_size)
            self._check_password(archive, [info for _, info in entries])
        except BaseException:
            forget_archive(self.path)
            raise
        remember_password(self.path, self._password)
        self._plan(entries, total)

    def __repr__(self) -> str:
        locked = ", password=***" if self._password is not None else ""
        return f"ZipSource({self.path!r}{locked})"

    # -- checks made before anything is written ------------------------------------------
    def _check_layout(self, start_dir: int, archive_size: int) -> None:
        """Refuse entries whose data overlap each other or the central directory."""
        if len(self._infos) > settings.zip_max_entries:
            raise ArchiveError(f"{self.path} has {len(self._infos)} entries, more than the "
                               f"{settings.zip_max_entries} accepted (settings.zip_max_entries)")
        end_of_previous = 0
        for info in sorted(self._infos, key=lambda info: info.header_offset):
            offset = info.header_offset
            if offset < end_of_previous:
                raise ArchiveError(
                    f"{self.path} has overlapping entries ({info.filename!r} starts inside the data "
                    "of another entry): this is how zip bombs are built; refused"
                )
            name_length = len(_stored_name(info))
            end_of_previous = offset + _LOCAL_HEADER_SIZE + name_length + info.compress_size
            if end_of_previous > min(start_dir, archive_size):
                raise ArchiveError(f"the entry {info.filename!r} of {self.path} claims data beyond the "
                                   "end of the archive: the archive is damaged or forged")

    def _check_sizes(self, infos: Sequence[Any], archive_size: int) -> int:
        """Refuse archives that would expand beyond the caps (zip bombs); return the total size."""
        limit_ratio, small = settings.zip_max_ratio, settings.zip_ratio_min_bytes
        total = 0
        for info in infos:
            total += info.file_size
            if info.file_size > small and info.file_size > limit_ratio * max(info.compress_size, 1):
                raise ArchiveError(
                    f"the entry {info.filename!r} of {self.path} would expand {info.compress_size} bytes "
                    f"into {info.file_size} (more than {limit_ratio:g}x): a zip bomb; refused "
                    "(settings.zip_max_ratio)"
                )
        if total > settings.zip_max_total_bytes:
            raise ArchiveError(f"{self.path} would expand to {total} bytes, more than the "
                               f"{settings.zip_max_total_bytes} accepted (settings.zip_max_total_bytes)")
        if total > small and total > limit_ratio * max(archive_size, 1):
            raise ArchiveError(f"{self.path} ({archive_size} bytes) would expand to {total} bytes, more "
                               f"than {limit_ratio:g}x its size: a zip bomb; refused (settings.zip_max_ratio)")
        return total

    def _check_free_space(self, total: int) -> None:
        """Refuse to land entries that the cache has no room for."""
        free = shutil.disk_usage(cache_folder()).free
        if total > free:
            raise ArchiveError(f"{self.path} needs {total} bytes in the cache ({settings.cache_dir}) "
                               f"but only {free} are free: free some space or set settings.cache_dir")

    def _check_password(self, archive: Any, infos: Sequence[Any]) -> None:
        encrypted = [info for info in infos if info.flag_bits & _ENCRYPTED]
        if not encrypted:
            return
        if self._password is None:
            raise PasswordRequired(f"{self.path} is encrypted: give its password "
                                   "(password=..., or --password-file on the command line)")
        probe = min(encrypted, key=lambda info: info.compress_size)
        import pyzipper

        wrong = f"the password does not open {self.path}: ask for it again"
        try:
            with archive.open(probe, pwd=self._password) as f:
                while f.read(_COPY_CHUNK):
                    pass
        except (RuntimeError, zlib.error) as exc:  # the key check failed, or it inflated garbage
            raise WrongPassword(wrong) from exc
        except pyzipper.BadZipFile as exc:
            # ZipCrypto's one-byte key check lets about one wrong key in 256 through (AES's two
            # bytes, one in 65,536): it then shows as a bad CRC or HMAC.
            if "crc" in str(exc).lower() or "hmac" in str(exc).lower():
                raise WrongPassword(wrong) from exc
            raise ArchiveError(f"cannot read the entry {probe.filename!r} of {self.path}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - converted to the error tree
            raise ArchiveError(f"cannot read the entry {probe.filename!r} of {self.path}: {exc}") from exc

    # -- where each entry lands ------------------------------------------------------------
    def _plan(self, entries: Sequence[tuple[int, Any]], total: int) -> None:
        """Check every name; decide whether entries land in the cache (room for ``total`` bytes) and where."""
        named: list[tuple[int, Any]] = []
        self._unsafe: list[ErrorRecord] = []
        for index, info in entries:
            try:
                relative_parts(info.filename)
            except DicomnbError as exc:
                self._unsafe.append(ErrorRecord.from_exception(self.path, exc, source=self.kind,
                                                               origin=self.origin, member=info.filename))
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                LOGGER.info("%s: %s is a symbolic link; it is read as a plain file", self.path, info.filename)
            named.append((index, info))
        self._media_roots: list[PurePosixPath] = []
        self.landing = self.copy or any(_base_name(info.filename).upper() == "DICOMDIR" for _, info in named)
        if not self.landing:
            self._jobs = [
                _Job(index, info.filename, offset=info.header_offset, stored_name=_stored_name(info),
                     method=info.compress_type, compressed=info.compress_size, size=info.file_size,
                     plain=info.compress_type in (0, 8) and not info.flag_bits & _ENCRYPTED)
                for index, info in named
            ]
            return
        self._check_free_space(total)  # read in place, entries need no room in the cache
        self.folder = cache_folder("zip", key_for(self.path, self._stamp))
        taken: set[str] = set()
        self._jobs = [_Job(index, info.filename, str(self.folder / safe_relative_path(info.filename, taken)))
                      for index, info in named]
        # A DICOMDIR decides for the media below its folder (the outermost one wins).
        roots = sorted({PurePosixPath(j.target).parent for j in self._jobs
                        if PurePosixPath(j.target).name.upper() == "DICOMDIR"}, key=lambda p: len(p.parts))
        for root in roots:
            if not any(root.is_relative_to(outer) for outer in self._media_roots):
                self._media_roots.append(root)

    # -- the Source protocol -------------------------------------------------------------------
    def items(self) -> Iterator[Item]:
        """Yield one item per entry: instance, image, attachment, missing record or error."""
        self._trees = []
        yield from self._unsafe
        has_media = bool(self._media_roots)
        chunks = [self._jobs[i : i + _BATCH] for i in range(0, len(self._jobs), _BATCH)]
        work: Callable[..., list[Item]]
        batches: list[tuple[Any, ...]]
        if self.landing:
            work = _land_batch
            batches = [(self.path, self._stamp, self._password, jobs, has_media, self.origin, not has_media)
                       for jobs in chunks]
        else:
            work = _read_batch
            batches = [(self.path, self._stamp, self._password, jobs, self.origin) for jobs in chunks]
        parallel = len(self._jobs) >= settings.parallel_threshold
        landed: list[str] = []
        try:
            for result in map_batches(work, batches, parallel=parallel):
                for item in result:
                    if has_media and isinstance(item, SkippedRecord):
                        landed.append(item.path)
                    else:
                        yield item
        finally:
            forget_archive(self.path)
        if has_media:
            yield from self._media_items(landed)

    def _media_items(self, landed: Sequence[str]) -> Iterator[Item]:
        """The archive holds DICOMDIR media: let the DICOMDIR source decide for them."""
        from dicomnb.sources.dicomdir import DicomdirSource
        from dicomnb.sources.local import classify_paths

        member_of = {job.target: job.name for job in self._jobs}
        outside: list[str] = []
        for target in landed:
            if not any(PurePosixPath(target).is_relative_to(root) for root in self._media_roots):
                outside.append(target)
        for root in self._media_roots:
            try:
                media = DicomdirSource(str(root), kind=self.kind, origin=self.origin)
            except DicomnbError as exc:
                dicomdir = str(root / "DICOMDIR")
                yield ErrorRecord.from_exception(self.path, exc, source=self.kind, origin=self.origin,
                                                 member=member_of.get(dicomdir))
                outside += [t for t in landed if PurePosixPath(t).is_relative_to(root)]
                continue
            for item in media.items():
                yield self._with_member(item, member_of)
            tree = media.tree()
            if tree is not None:
                self._trees.append(tree)
        for item in classify_paths(outside, self.kind, self.origin):
            yield self._with_member(item, member_of)

    @staticmethod
    def _with_member(item: Item, member_of: dict[str, str]) -> Item:
        """Name the archive entry a record of the landed media came from."""
        if isinstance(item, (InstanceRecord, ImageRecord, AttachmentRecord, ErrorRecord)) and item.member is None:
            member = member_of.get(item.path)
            if member is not None:
                return dataclasses.replace(item, member=member)
        return item

    def tree(self) -> Any:
        """The records of the DICOMDIR(s) in the archive, or ``None`` (see DicomdirSource.tree)."""
        if not self._trees:
            return None
        if len(self._trees) == 1:
            return self._trees[0]
        import pandas as pd

        return pd.concat(self._trees, ignore_index=True)

