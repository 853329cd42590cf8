"""The verbs a notebook user types: every dialog action as a plain Python call.

Each import verb files what it finds into the process-wide :data:`catalog` and returns an
:class:`~dicomnb.core.report.ImportReport`. The same verbs back the command line.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

from dicomnb.core.catalog import Catalog
from dicomnb.core.detect import Kind, sniff
from dicomnb.core.errors import DicomdirError, InputError
from dicomnb.core.model import ErrorRecord
from dicomnb.core.report import ImportReport
from dicomnb.sources import Source
from dicomnb.sources.local import LocalSource

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "catalog",
    "get",
    "import_dicomdir",
    "import_local",
    "import_zip",
    "load_series",
    "open_sources",
]

LOGGER = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
#: ``progress(report)``: called with an import's report as it grows (ten times a second at most).
Progress = Callable[[ImportReport], object]


#: The catalog of this Python process: everything imported from any source.
catalog = Catalog()


def _is_zip(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return sniff(f.read(8)) is Kind.ZIP
    except OSError:
        return False


def open_sources(
    paths: PathLike | Sequence[PathLike],
    *,
    recursive: bool = True,
    password: str | bytes | None = None,
    copy: bool = False,
) -> list[Source]:
    """Route each path to its source: a ZIP file, DICOMDIR media, or plain files/folders.

    A file that is a ZIP archive (by content) goes to :class:`ZipSource`; a DICOMDIR file,
    or a folder holding one at its root, to :class:`DicomdirSource`; everything else is
    gathered into one :class:`LocalSource`.
    """
    from dicomnb.sources.dicomdir import DicomdirSource, find_dicomdir, is_dicomdir_file
    from dicomnb.sources.ziparchive import ZipSource

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    sources: list[Source] = []
    plain: list[str] = []
    notes: list[ErrorRecord] = []
    for raw in paths:
        path = os.path.abspath(os.fspath(raw))
        if os.path.isfile(path) and _is_zip(path):
            sources.append(ZipSource(path, password=password, copy=copy))
        elif (os.path.isfile(path) and is_dicomdir_file(path)) or (
                os.path.isdir(path) and find_dicomdir(path) is not None):
            try:
                sources.append(DicomdirSource(path, copy=copy))
            except DicomdirError as exc:
                # One unreadable index does not lose the media: its folder is imported as
                # plain files (DICOM recognised by content), and the index is reported.
                LOGGER.warning("%s: %s; importing the folder without it", path, exc)
                notes.append(ErrorRecord.from_exception(path, exc, source="dicomdir", origin=path))
                if os.path.isdir(path):
                    plain.append(path)
        else:
            plain.append(path)
    if plain or notes:
        sources.insert(0, LocalSource(plain, recursive=recursive, notes=notes))
    return sources


def _ingest_all(sources: Sequence[Source], progress: Progress | None = None,
                cancel: threading.Event | None = None) -> ImportReport:
    report = ImportReport()
    for source in sources:
        if cancel is not None and cancel.is_set():
            report.stopped = True
            break
        catalog.ingest(source, report, progress=progress, cancel=cancel)
        tree = getattr(source, "tree", None)
        if callable(tree):
            sub = tree()
            if sub is not None:
                report.merge(ImportReport(tree=sub))
    return report


def import_local(
    paths: PathLike | Sequence[PathLike],
    *,
    recursive: bool = True,
    password: str | bytes | None = None,
    copy: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> ImportReport:
    """Import local files and/or folders into the catalog.

    DICOM is recognised by content, whatever the extension; standard images are listed in
    ``catalog.images``; other files are skipped and counted. A ZIP file or a folder holding
    a DICOMDIR is imported as such (``password`` and ``copy`` apply to them).

    Parameters
    ----------
    paths : path or sequence of paths
        Files and/or folders.
    recursive : bool
        Search folders recursively (default) or only their top level.
    password : str or bytes, optional
        For encrypted ZIP files among ``paths``.
    copy : bool
        Copy DICOMDIR media, and the entries of ZIP files, into dicomnb's cache first
        (slow media; files to keep when the archive goes away).
    progress : callable, optional
        Called as ``progress(report)`` with the report as it grows, at most ten times a
        second and once at the end (``len(report.instances)`` for a counter).
    cancel : threading.Event, optional
        Set it to stop the import at the next file; what was read stays in the catalog
        and the report's ``stopped`` is True.
    """
    return _ingest_all(open_sources(paths, recursive=recursive, password=password, copy=copy),
                       progress, cancel)


def import_zip(path: PathLike, *, password: str | bytes | None = None, copy: bool = False,
               progress: Progress | None = None, cancel: threading.Event | None = None) -> ImportReport:
    """Import a DICOM ZIP (stored, deflated, ZipCrypto or AES encrypted).

    ``progress`` and ``cancel`` as for :func:`import_local`. The instances stay in the archive (``path`` is the archive, ``member`` the entry) and
    are read from it when pixels are asked for; ``copy=True`` lands them in dicomnb's cache
    instead. An archive holding DICOMDIR media is always landed and read as that media.

    Raises
    ------
    PasswordRequired
        The archive is encrypted and no password was given.
    WrongPassword
        The password does not open it.
    ArchiveError
        The archive is corrupt or refused as unsafe (zip bomb, overlapping entries).
    """
    from dicomnb.sources.ziparchive import ZipSource

    return _ingest_all([ZipSource(os.fspath(path), password=password, copy=copy)], progress, cancel)


def import_dicomdir(path: PathLike, *, copy: bool = False, progress: Progress | None = None,
                    cancel: threading.Event | None = None) -> ImportReport:
    """Import DICOMDIR media: a DICOMDIR file or the folder (CD/DVD) that holds it.

    Only files that match their DICOMDIR record are imported; records whose files are
    missing are listed in ``catalog.missing``; other non-DICOM files on the media are
    listed in ``catalog.attachments``. The returned report's ``tree`` holds the DICOMDIR's
    PATIENT/STUDY/SERIES/IMAGE records. ``progress`` and ``cancel`` as for :func:`import_local`.
    """
    from dicomnb.sources.dicomdir import DicomdirSource

    return _ingest_all([DicomdirSource(os.fspath(path), copy=copy)], progress, cancel)


def get(
    local: PathLike | Sequence[PathLike] = (),
    zips: PathLike | Sequence[PathLike] = (),
    *,
    password: str | bytes | None = None,
    recursive: bool = True,
    copy: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> ImportReport:
    """Import several sources at once, like ``dicomnb get -l PATH … -z ZIP …``.

    ``progress`` and ``cancel`` as for :func:`import_local`.
    """
    from dicomnb.sources.ziparchive import ZipSource

    if isinstance(local, (str, os.PathLike)):
        local = [local]
    if isinstance(zips, (str, os.PathLike)):
        zips = [zips]
    for path in [*local, *zips]:
        if not os.path.exists(path):
            raise InputError(f"no such file or folder: {os.fspath(path)}")
    sources = open_sources(local, recursive=recursive, password=password, copy=copy) if local else []
    sources += [ZipSource(os.path.abspath(os.fspath(z)), password=password, copy=copy) for z in zips]
    return _ingest_all(sources, progress, cancel)


def load_series(series_instance_uid: str, *, modality_lut: bool = True) -> np.ndarray:
    """Pixel data of a series of the catalog as a numpy volume sorted by slice position."""
    return catalog.load_series(series_instance_uid, modality_lut=modality_lut)


def sample_data() -> Path:
    """The folder of DICOM sample files bundled with pydicom (for demos and tests)."""
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"
