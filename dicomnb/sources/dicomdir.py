"""DICOMDIR media: a CD/DVD, or a folder, whose DICOMDIR indexes the files on it.

The PATIENT → STUDY → SERIES → IMAGE tree comes from the directory records (walked by their
offsets, or by their order when the offsets are unusable), but what is imported are the real
files: each ReferencedFileID is looked up on the media, and the file must be readable and
hold the SOP instance its record names. The lookup is forgiving about names — exact, else
without case (Linux often mounts CDs lower-cased, and pydicom's ``FileSet`` then finds
nothing), else ``NAME.*`` for the file; ISO 9660 ``;1`` suffixes are ignored — and strict
about places: ``..``, absolute IDs and links leading off the media are refused. Absent files
become :class:`MissingRecord`; other files on the media are attachments (not DICOM) or
skipped (DICOM that no record references).
"""

from __future__ import annotations

import logging
import os
import shutil
import string
import struct
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from dicomnb.core.detect import HEAD_SIZE, Kind, attachment_kind, sniff
from dicomnb.core.errors import DicomdirError, NotDicomError, UnreadableFileError, UnsafePathError
from dicomnb.core.model import (
    AttachmentRecord,
    ErrorRecord,
    InstanceRecord,
    Item,
    MissingRecord,
    SkippedRecord,
)
from dicomnb.core.scan import MEDIA_STORAGE_DIRECTORY
from dicomnb.core.store import atomic_writer, cache_folder, check_relative_name, key_for
from dicomnb.sources.local import classify_paths, walk_files

if TYPE_CHECKING:
    import pandas as pd
    from pydicom.dataset import Dataset

__all__ = ["TREE_COLUMNS", "DicomdirSource", "detect_cdrom", "find_dicomdir", "is_dicomdir_file"]

LOGGER = logging.getLogger(__name__)

#: The record types above the leaves, by depth; any other type is a leaf level.
_LEVELS = {"PATIENT": 0, "STUDY": 1, "SERIES": 2}
_LEAF_LEVEL = 3
_INACTIVE = 0x0000  # RecordInUseFlag of a record deleted in place
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_RECORD_SEQUENCE_TAGS = (b"\x04\x00\x20\x12", b"\x00\x04\x12\x20")  # (0004,1220) LE, BE
_CHEAP_READ = 4096
_TREE_KEYWORDS = ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyDescription",
                  "SeriesInstanceUID", "Modality", "SeriesNumber")

#: The ``status`` values of :meth:`DicomdirSource.tree`.
OK, MISSING, UNREADABLE, UNSAFE, OTHER_INSTANCE = "ok", "missing", "unreadable", "unsafe", "other instance"
_NOT_FOUND = "file not found on the media"
_UNREFERENCED = "DICOM file not referenced by the DICOMDIR"
_WITHOUT_INDEX = "dicomnb.import_local (dicomnb get -l) imports the folder's files without it"


@dataclass(slots=True)
class _Entry:
    """One directory record that references a file, with its ancestors' attributes."""

    level: str
    PatientID: str | None
    PatientName: str | None
    StudyInstanceUID: str | None
    StudyDate: str | None
    StudyDescription: str | None
    SeriesInstanceUID: str | None
    Modality: str | None
    SeriesNumber: int | None
    SOPInstanceUID: str | None
    ReferencedFileID: str
    path: str | None = None
    status: str | None = None


#: The columns of :meth:`DicomdirSource.tree`.
TREE_COLUMNS: tuple[str, ...] = (*(f.name for f in fields(_Entry)), "origin")


# -- finding and recognising a DICOMDIR ------------------------------------------------------
def _media_key(name: str) -> str:
    """A name as media compare it: no case, no ISO 9660 version suffix, no trailing dot."""
    base, sep, version = name.rpartition(";")
    if sep and version.isdigit():
        name = base
    return name.rstrip(".").upper()


def find_dicomdir(folder: str | os.PathLike[str]) -> Path | None:
    """Return the file named DICOMDIR (any case, ``DICOMDIR.;1`` too) at the root of ``folder``.

    Returns ``None`` when there is none or ``folder`` cannot be listed.
    """
    try:
        with os.scandir(folder) as entries:
            found = sorted(e.path for e in entries if _media_key(e.name) == "DICOMDIR" and e.is_file())
    except OSError:
        return None
    # an exact "DICOMDIR" wins over other spellings when a folder holds several
    found.sort(key=lambda p: os.path.basename(p) != "DICOMDIR")
    return Path(found[0]) if found else None


def _media_storage_class(head: bytes) -> str | None:
    """The MediaStorageSOPClassUID of a Part 10 file from its first bytes, or ``None``."""
    if head[128:132] != b"DICM":
        return None
    pos = 132
    while pos + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, pos)
        if group != 0x0002:
            return None
        if head[pos + 4 : pos + 6] in _LONG_VRS:
            if pos + 12 > len(head):
                return None
            (length,) = struct.unpack_from("<I", head, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", head, pos + 6)
            start = pos + 8
        if element == 0x0002:
            return head[start : start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length
    return None


def _read_head(path: str | os.PathLike[str], size: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def is_dicomdir_file(path: str) -> bool:
    """True if the file is named DICOMDIR (any case) or its meta says Media Storage Directory.

    Only the name and the first bytes are looked at; unreadable files are not DICOMDIRs.
    """
    if _media_key(os.path.basename(path)) == "DICOMDIR":
        return True
    try:
        head = _read_head(path, 1024)
    except OSError:
        return False
    return _media_storage_class(head) == MEDIA_STORAGE_DIRECTORY


def _looks_readable(dicomdir: str | os.PathLike[str]) -> bool:
    """Cheap check that a DICOMDIR is a Media Storage Directory with directory records."""
    try:
        head = _read_head(dicomdir, _CHEAP_READ)
    except OSError:
        return False
    return (_media_storage_class(head) == MEDIA_STORAGE_DIRECTORY
            and any(tag in head for tag in _RECORD_SEQUENCE_TAGS))


def _default_roots() -> list[str]:
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    roots = ["/media", "/mnt", f"/run/media/{user}" if user else "/run/media", "/Volumes"]
    if os.name == "nt":  # pragma: no cover - Windows only
        roots += [f"{letter}:\\" for letter in string.ascii_uppercase]
    return roots


def _subfolders(folder: str) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.path for e in entries if e.is_dir())
    except OSError:
        return []


def detect_cdrom(roots: Sequence[str | os.PathLike[str]] | None = None) -> list[Path]:
    """Find mounted media holding a readable DICOMDIR.

    Each root, and its sub-folders two levels down (``/media/user/CDROM``), is searched
    for a folder with a DICOMDIR at its top that is a Media Storage Directory with records.

    Parameters
    ----------
    roots : sequence of paths, optional
        Where to look. Default: ``/media``, ``/mnt``, ``/run/media/$USER``, ``/Volumes``
        and, on Windows, the drive roots ``A:\\`` to ``Z:\\``.

    Returns
    -------
    list of Path
        The media folders found, sorted; missing or unreadable roots are passed over.
    """
    found: dict[str, Path] = {}
    for root in _default_roots() if roots is None else [os.fspath(r) for r in roots]:
        level = [root] if os.path.isdir(root) else []
        for depth in range(3):
            below = []
            for folder in level:
                dicomdir = find_dicomdir(folder)
                if dicomdir is not None and _looks_readable(dicomdir):
                    # media found: its own folders are not searched (slow on a CD, and part of it)
                    found.setdefault(os.path.realpath(folder), Path(os.path.abspath(folder)))
                    LOGGER.debug("DICOMDIR media found in %s", folder)
                elif depth < 2:
                    below += _subfolders(folder)
            level = below
    return sorted(set(found.values()))


# -- reading the directory records -----------------------------------------------------------
def _read_dicomdir(path: str) -> Dataset:
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
            records = ds.get("DirectoryRecordSequence")
    except OSError as exc:
        raise DicomdirError(f"cannot read the DICOMDIR {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds of error on corrupt data
        raise DicomdirError(f"{path} does not parse as a DICOMDIR ({exc}): {_WITHOUT_INDEX}") from exc
    if records is None:
        what = "a DICOM instance" if "SOPInstanceUID" in ds else "no DirectoryRecordSequence"
        raise DicomdirError(f"{path} is not a DICOMDIR (it holds {what}): {_WITHOUT_INDEX}")
    return ds


def _offset(record: Dataset, keyword: str) -> int:
    try:
        return int(record.get(keyword) or 0)
    except (TypeError, ValueError):
        return -1  # unusable: sends the walk to the sequence order


def _active(record: Dataset) -> bool:
    return record.get("RecordInUseFlag") != _INACTIVE


def _walk_by_offsets(ds: Dataset, records: list[Dataset]) -> list[tuple[Dataset, tuple[Dataset, ...]]] | None:
    """Records in tree order with their ancestors, following the offsets; None if they are unusable."""
    by_offset = {getattr(r, "seq_item_tell", None): r for r in records}
    first = _offset(ds, "OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity")
    if first not in by_offset:
        if records:
            LOGGER.warning("the DICOMDIR's root offset %d is not a record: reading the records "
                           "in sequence order", first)
        return None
    out: list[tuple[Dataset, tuple[Dataset, ...]]] = []
    visited: set[int] = set()
    stack: list[tuple[int, tuple[Dataset, ...]]] = [(first, ())]
    while stack:
        offset, ancestors = stack.pop()
        if offset == 0:
            continue
        record = by_offset.get(offset)
        if record is None or offset in visited:
            LOGGER.warning("DICOMDIR offset %d is %s: reading the records in sequence order",
                           offset, "visited twice (a loop)" if record is not None else "not a record")
            return None
        visited.add(offset)
        stack.append((_offset(record, "OffsetOfTheNextDirectoryRecord"), ancestors))
        if _active(record):  # an inactive record hides its whole sub-tree
            out.append((record, ancestors))
            stack.append((_offset(record, "OffsetOfReferencedLowerLevelDirectoryEntity"),
                          (*ancestors, record)))
    return out


def _walk_by_order(records: list[Dataset]) -> list[tuple[Dataset, tuple[Dataset, ...]]]:
    """Records with ancestors inferred from their order and types (PATIENT > STUDY > SERIES)."""
    out: list[tuple[Dataset, tuple[Dataset, ...]]] = []
    stack: list[tuple[int, Dataset]] = []
    for record in records:
        if not _active(record):
            continue
        level = _LEVELS.get(str(record.get("DirectoryRecordType", "")).strip().upper(), _LEAF_LEVEL)
        while stack and stack[-1][0] >= level:
            stack.pop()
        out.append((record, tuple(r for _, r in stack)))
        stack.append((level, record))
    return out


def _file_id(record: Dataset) -> tuple[str, ...]:
    value = record.get("ReferencedFileID")
    if value is None:
        return ()
    parts = [value] if isinstance(value, (str, bytes)) else list(value)
    return tuple(p.decode("latin-1") if isinstance(p, bytes) else str(p) for p in parts)


def _text(record: Dataset, keyword: str) -> str | None:
    try:
        value = record.get(keyword)
    except Exception:  # noqa: BLE001 - a value pydicom cannot convert is absent to us
        return None
    if value is None:
        return None
    if not isinstance(value, str) and isinstance(value, Sequence):
        value = "\\".join(str(v) for v in value)
    text = str(value).strip(" \x00")
    return text or None


def _entries(ds: Dataset) -> list[_Entry]:
    """The records that reference a file, each with its ancestors' attributes."""
    records = list(ds.DirectoryRecordSequence)
    walked = _walk_by_offsets(ds, records)
    by_order = _walk_by_order(records)

    def referencing(walk: list[tuple[Dataset, tuple[Dataset, ...]]]) -> int:
        return sum(1 for record, _ in walk if _file_id(record))

    if walked is None or referencing(walked) < referencing(by_order):
        if walked is not None:
            LOGGER.warning("the DICOMDIR offsets reach fewer records than its sequence holds: "
                           "reading the records in sequence order")
        walked = by_order
    own: dict[int, dict[str, str]] = {}  # the values each record holds, read once

    def values_of(record: Dataset) -> dict[str, str]:
        if id(record) not in own:
            texts = {keyword: _text(record, keyword) for keyword in _TREE_KEYWORDS}
            own[id(record)] = {keyword: text for keyword, text in texts.items() if text}
        return own[id(record)]

    entries = []
    for record, ancestors in walked:
        file_id = _file_id(record)
        if not file_id:
            continue
        values: dict[str, str | None] = dict.fromkeys(_TREE_KEYWORDS)
        for level in (*ancestors, record):  # the nearest record holding a value wins
            values.update(values_of(level))
        number = values.pop("SeriesNumber")
        entries.append(_Entry(
            level=_text(record, "DirectoryRecordType") or "UNKNOWN", **values,
            SeriesNumber=int(number) if number and number.lstrip("+-").isdigit() else None,
            SOPInstanceUID=_text(record, "ReferencedSOPInstanceUIDInFile"),
            ReferencedFileID="/".join(file_id)))
    return entries


# -- finding the files on the media ----------------------------------------------------------
class _Media:
    """Looks ReferencedFileIDs up below a media root, forgiving about case, strict about escapes."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.real_root = os.path.normcase(os.path.realpath(root))
        self._listings: dict[str, tuple[set[str], dict[str, list[str]], dict[str, list[str]]]] = {}
        self._safe_folders: set[str] = set()

    def inside(self, path: str) -> bool:
        """True if the real path of ``path`` (links resolved) is the media root or below it."""
        real = os.path.normcase(os.path.realpath(path))
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def _listing(self, folder: str) -> tuple[set[str], dict[str, list[str]], dict[str, list[str]]]:
        listing = self._listings.get(folder)
        if listing is None:
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                names = []
            by_key: dict[str, list[str]] = {}
            by_stem: dict[str, list[str]] = {}
            for name in names:
                by_key.setdefault(_media_key(name), []).append(name)
                by_stem.setdefault(_media_key(os.path.splitext(name)[0]), []).append(name)
            listing = self._listings[folder] = (set(names), by_key, by_stem)
        return listing

    def resolve(self, file_id: str) -> str | None:
        """The path of the file ``file_id`` names, or ``None`` if it is not on the media.

        Raises
        ------
        UnsafePathError
            The ID is absolute, climbs with ``..``, or leads outside through a link.
        """
        parts = check_relative_name(file_id).parts
        current = self.root
        for index, part in enumerate(parts):
            names, by_key, by_stem = self._listing(current)
            last = index == len(parts) - 1
            if part in names:
                name = part
            else:
                matches = by_key.get(_media_key(part)) or (by_stem.get(_media_key(part)) if last else None)
                if not matches:
                    return None
                name = matches[0]
            current = os.path.join(current, name)
            if current in self._safe_folders:
                continue
            if not self.inside(current):
                raise UnsafePathError(f"the DICOMDIR names {file_id!r}, but {current} is a link "
                                      "leading outside the media: refused")
            if not last:
                self._safe_folders.add(current)
        return current if os.path.isfile(current) else None


# -- the source ------------------------------------------------------------------------------
class DicomdirSource:
    """DICOMDIR media: the files the DICOMDIR references, checked against their records.

    Parameters
    ----------
    path : path
        The DICOMDIR file, or a folder (a CD/DVD mount point) with a DICOMDIR at its top.
    copy : bool
        Copy the DICOMDIR and the files it references into a fresh folder of the cache
        first (for slow media), and import from the copy; attachments stay on the media.
    kind : str
        The ``source`` column of the records (``"zip"`` for an extracted archive).
    origin : str, optional
        The ``origin`` column; default the absolute ``path``.

    Raises
    ------
    DicomdirError
        There is no DICOMDIR, or it cannot be read (not DICOM, no directory records).

    Attributes
    ----------
    dicomdir, root : Path
        The DICOMDIR file, and its folder: the media root the file IDs resolve against.
    copy_root : Path or None
        The folder of the copy, once :meth:`items` has made it (``copy=True``).
    """

    kind = "dicomdir"

    def __init__(self, path: str | os.PathLike[str], copy: bool = False, *, kind: str = "dicomdir",
                 origin: str | None = None) -> None:
        given = os.path.abspath(os.fspath(path))
        if os.path.isdir(given):
            found = find_dicomdir(given)
            if found is None:
                raise DicomdirError(f"no DICOMDIR at the top of {given}: import the folder with "
                                    "import_local instead")
            dicomdir = str(found)
        elif os.path.isfile(given):
            dicomdir = given
        else:
            raise DicomdirError(f"no such DICOMDIR or folder: {given}")
        self.dicomdir = Path(dicomdir)
        self.root = self.dicomdir.parent
        self.copy = copy
        self.kind = kind
        self.origin = origin if origin is not None else given
        self.copy_root: Path | None = None
        ds = _read_dicomdir(dicomdir)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._entries = _entries(ds)
        except Exception as exc:  # noqa: BLE001 - a corrupt record sequence, whatever pydicom raises
            raise DicomdirError(f"the directory records of {dicomdir} cannot be walked ({exc}): "
                                f"{_WITHOUT_INDEX}") from exc
        self._checked = False
        LOGGER.info("DICOMDIR %s: %d records reference files", dicomdir, len(self._entries))

    def __repr__(self) -> str:
        return f"DicomdirSource({str(self.dicomdir)!r}, copy={self.copy}, kind={self.kind!r})"

    def _error(self, path: str, exc: Exception) -> ErrorRecord:
        return ErrorRecord.from_exception(path, exc, source=self.kind, origin=self.origin)

    def _missing(self, entry: _Entry, reason: str) -> MissingRecord:
        return MissingRecord(entry.ReferencedFileID, entry.SOPInstanceUID, entry.SeriesInstanceUID,
                             entry.StudyInstanceUID, entry.PatientID, reason, self.kind, self.origin)

    def items(self) -> Iterator[Item]:
        """Yield each record's file as an instance if it holds the SOP instance the record names.

        A file absent or holding another instance is a :class:`MissingRecord`; an unreadable
        file or an unsafe ID an :class:`ErrorRecord`. Then the files no record references:
        an :class:`AttachmentRecord` if not DICOM, else a :class:`SkippedRecord`.
        """
        media = _Media(str(self.root))
        root = str(self.root)
        referenced: set[str] = {os.path.normcase(str(self.dicomdir))}
        wanted: dict[str, list[_Entry]] = {}
        for entry in self._entries:
            entry.path, entry.status = None, None
            try:
                found = media.resolve(entry.ReferencedFileID)
            except UnsafePathError as exc:
                entry.status = UNSAFE
                shown = f"{root}{os.sep}{entry.ReferencedFileID}"
                referenced.add(os.path.normcase(shown))
                yield self._error(shown, exc)
                continue
            if found is None:
                entry.status = MISSING
                yield self._missing(entry, _NOT_FOUND)
                continue
            entry.path = found
            referenced.add(os.path.normcase(found))
            wanted.setdefault(found, []).append(entry)

        read_from = {path: path for path in wanted}
        if self.copy:
            copies, failures = self._copy_to_cache(list(wanted))
            read_from.update(copies)
            for path, failure in failures.items():
                for entry in wanted.pop(path):
                    entry.status = UNREADABLE
                yield self._error(path, failure)
        media_path = {copy: path for path, copy in read_from.items() if path in wanted}
        for item in classify_paths(list(media_path), self.kind, self.origin):
            path = media_path[item.path]  # type: ignore[union-attr]
            yield from self._check(item, path, wanted[path])
        self._checked = True
        yield from self._unreferenced(media, referenced)

    def _check(self, item: Item, path: str, entries: list[_Entry]) -> Iterator[Item]:
        """Yield what the file at ``path`` (read as ``item``) is for the records naming it."""
        if not isinstance(item, InstanceRecord):
            if isinstance(item, ErrorRecord):  # reported at its media path, even when read from a copy
                yield ErrorRecord(path, item.error, item.message, self.kind, self.origin)
            else:
                reason = getattr(item, "reason", "a standard image")
                yield self._error(path, NotDicomError(
                    f"the DICOMDIR names this file as a DICOM instance, but it is {reason}"))
            for entry in entries:
                entry.status = UNREADABLE
            return
        imported = False
        for entry in entries:
            if entry.SOPInstanceUID in (None, item.SOPInstanceUID):
                entry.status = OK
                if not imported:
                    imported = True
                    yield item
            else:
                entry.status = OTHER_INSTANCE
                yield self._missing(entry, f"the file holds another instance ({item.SOPInstanceUID}), "
                                           "not the one the DICOMDIR names")

    def _copy_to_cache(self, paths: list[str]) -> tuple[dict[str, str], dict[str, Exception]]:
        """Copy the DICOMDIR and ``paths`` under a fresh cache folder, keeping the layout."""
        if self.copy_root is None:
            prefix = f"{key_for(self.dicomdir)}-"
            self.copy_root = Path(tempfile.mkdtemp(prefix=prefix, dir=cache_folder("media")))
        target = self.copy_root
        copies: dict[str, str] = {}
        failures: dict[str, Exception] = {}
        root = str(self.root)
        LOGGER.info("copying %d files of %s to %s", len(paths), root, target)
        for source in [str(self.dicomdir), *paths]:
            destination = target / os.path.relpath(source, root)
            real = os.path.realpath(source)  # checked to lie inside the media: read it, not the link
            try:
                if not (destination.is_file() and destination.stat().st_size == os.path.getsize(real)):
                    with open(real, "rb") as fin, atomic_writer(destination) as fout:
                        shutil.copyfileobj(fin, fout, 1024 * 1024)
            except OSError as exc:
                failures[source] = UnreadableFileError(
                    f"cannot copy the file from the media: {exc.strerror or exc}")
                continue
            copies[source] = str(destination)
        if failures.pop(str(self.dicomdir), None) is not None:
            LOGGER.warning("the DICOMDIR could not be copied to %s; the files were", target)
        return copies, failures

    def _unreferenced(self, media: _Media, referenced: set[str]) -> Iterator[Item]:
        """Yield the files no record references: DICOM ones skipped, the others attachments."""
        for path in walk_files(self.root):
            if os.path.normcase(path) in referenced:
                continue
            if not media.inside(path):
                yield self._error(path, UnsafePathError(
                    f"{path} is a link leading outside the media: not read"))
                continue
            try:
                head = _read_head(path, HEAD_SIZE)
                size = os.path.getsize(path)
            except OSError as exc:
                yield self._error(path, UnreadableFileError(f"cannot read the file: {exc.strerror or exc}"))
                continue
            if sniff(head) is Kind.DICOM:
                yield SkippedRecord(path, _UNREFERENCED)
            else:
                yield AttachmentRecord(path, size, attachment_kind(path), self.kind, self.origin)

    def tree(self) -> pd.DataFrame:
        """One row per record that references a file (:data:`TREE_COLUMNS`), with its status.

        The patient, study and series columns come from the record's ancestors; ``path`` is
        the file found on the media (or None); ``status`` is one of ``"ok"``, ``"missing"``,
        ``"unreadable"``, ``"unsafe"``, ``"other instance"``. Runs :meth:`items` if it has not run.
        """
        import pandas as pd

        if not self._checked:
            for _ in self.items():
                pass
        rows = [(*astuple(entry), self.origin) for entry in self._entries]
        df = pd.DataFrame.from_records(rows, columns=list(TREE_COLUMNS))
        df["SeriesNumber"] = df["SeriesNumber"].astype("Int64")
        return df
