"""Where retrieved instances land, and what a retrieve reports.

Every retrieve method (C-GET, C-MOVE, WADO-URI, WADO-RS) starts from the instances a C-FIND listed
(:class:`Expected`) and hands each instance that arrives to one :class:`Landing`, which

- accepts only the instances it is waiting for (anything else is refused and reported),
- writes the file atomically in the local store (:func:`~dicomnb.core.store.instance_path`:
  names are hashes of the UIDs, never the UIDs), or, for an instance streamed to a temporary
  file in the store (:meth:`Landing.land_file`), renames it into place once its header
  says which instance it is,
- files it into the catalog at once (so an interrupted retrieve keeps what arrived),
- copies it to the destination folder, when one was asked for.

Before anything is asked for, instances the store already holds complete are filed from
there and not fetched again: a retrieve can be run again to finish an interrupted one.
The network side lives in :mod:`dicomnb.sources.retrieve`, :mod:`dicomnb.sources.wado_uri`
and :mod:`dicomnb.sources.dicomweb`.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomnb.core.classify import classify_file, classify_head
from dicomnb.core.model import ErrorRecord, InstanceRecord, Item
from dicomnb.core.overrides import Overrides, overridden
from dicomnb.core.store import atomic_write, atomic_writer, instance_file_name, instance_path, series_folder

__all__ = ["IMPLEMENTATION_UID", "IMPLEMENTATION_VERSION", "Expected", "Landing", "RetrieveResult", "StudyContents",
           "expected_instances", "part10_header"]

#: Our Implementation Class UID (a UUID-derived UID, PS3.5 B.2) and version name, written in
#: the file meta information and sent in association requests.
IMPLEMENTATION_UID = "2.25.229207155873339196624683722233364096511"
IMPLEMENTATION_VERSION = "DICOMNB_010"

#: C-STORE statuses a landing answers with (PS3.4 B.2.3, PS3.7 C).
SUCCESS = 0x0000
REFUSED_NOT_AUTHORISED = 0x0124     # not an instance we asked for
OUT_OF_RESOURCES = 0xA700           # the file could not be written
CANNOT_UNDERSTAND = 0xC000          # what arrived is not a readable instance

_COPY_CHUNK = 1 << 20               # bytes read at a time when copying a stored file

#: The columns of an instance in ``RetrieveResult.to_json()``.
JSON_COLUMNS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
                "TransferSyntaxUID", "path")


@dataclass(frozen=True)
class Expected:
    """An instance a C-FIND listed: what a retrieve must bring back."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str = ""


def expected_instances(rows: Iterable[Mapping[str, Any]], study_uid: str) -> list[Expected]:
    """IMAGE-level C-FIND rows as :class:`Expected` instances (rows without a UID dropped)."""
    found: dict[str, Expected] = {}
    for row in rows:
        sop = str(row.get("SOPInstanceUID") or "")
        if sop:
            found[sop] = Expected(str(row.get("StudyInstanceUID") or study_uid),
                                  str(row.get("SeriesInstanceUID") or ""), sop,
                                  str(row.get("SOPClassUID") or ""))
    return list(found.values())


def _number(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


@dataclass
class StudyContents:
    """What a study holds, listed before a retrieve: its instances, and what labels its series.

    Attributes
    ----------
    instances : list of Expected
        The instances, series by series in the listing's order.
    sop_classes : list of str
        The study's SOP classes when the archive says (C-GET's presentation contexts).
    numbers : dict of str to int
        InstanceNumber by SOP Instance UID, where the archive gave it (the order a series is
        fetched in).
    series : dict of str to dict
        SeriesInstanceUID → its SERIES-level row (Modality, SeriesNumber, SeriesDescription...).
    """

    instances: list[Expected] = field(default_factory=list)
    sop_classes: list[str] = field(default_factory=list)
    numbers: dict[str, int] = field(default_factory=dict)
    series: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_rows(self, rows: Iterable[Mapping[str, Any]], study_uid: str) -> list[Expected]:
        """Add IMAGE-level rows; return their instances (new ones only)."""
        known = {e.sop_instance_uid for e in self.instances}
        added = [e for e in expected_instances(rows, study_uid) if e.sop_instance_uid not in known]
        self.instances += added
        for row in rows:
            number = _number(row.get("InstanceNumber"))
            if number is not None and row.get("SOPInstanceUID"):
                self.numbers[str(row["SOPInstanceUID"])] = number
        return added

    def by_series(self) -> dict[str, list[Expected]]:
        """The instances by SeriesInstanceUID, in the listing's order."""
        found: dict[str, list[Expected]] = {}
        for e in self.instances:
            found.setdefault(e.series_uid, []).append(e)
        return found

    def label(self, series_uid: str) -> str:
        """``"CT 3: Chest 5 mm"``: what a download panel calls the series."""
        row = self.series.get(series_uid, {})
        modality = str(row.get("Modality") or "").strip()
        number = _number(row.get("SeriesNumber"))
        description = str(row.get("SeriesDescription") or "").strip()
        head = " ".join(part for part in (modality, "" if number is None else str(number)) if part)
        if head and description:
            return f"{head}: {description}"
        return head or description or f"series …{series_uid[-12:]}"


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"UN", b"SQ", b"UT", b"OW"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _text(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def part10_header(sop_class: str, sop_instance: str, transfer_syntax: str, source_aet: str = "") -> bytes:
    """The preamble, ``DICM`` and file meta information of a Part 10 file (PS3.10 7.1).

    Followed by the data set as received (in ``transfer_syntax``), it makes the file an
    archive sends over C-STORE, with its original encoding.
    """
    meta = (_element(2, 0x0001, b"OB", b"\x00\x01")
            + _element(2, 0x0002, b"UI", _text(sop_class, b"\x00"))
            + _element(2, 0x0003, b"UI", _text(sop_instance, b"\x00"))
            + _element(2, 0x0010, b"UI", _text(transfer_syntax, b"\x00"))
            + _element(2, 0x0012, b"UI", _text(IMPLEMENTATION_UID, b"\x00"))
            + _element(2, 0x0013, b"SH", _text(IMPLEMENTATION_VERSION, b" ")))
    if source_aet:
        meta += _element(2, 0x0016, b"AE", _text(source_aet.strip(), b" "))
    return bytes(128) + b"DICM" + _element(2, 0x0000, b"UL", struct.pack("<I", len(meta))) + meta


@dataclass
class RetrieveResult:
    """What a retrieve brought back.

    Attributes
    ----------
    node : str
        The node retrieved from.
    study_uid : str
        The study.
    method : str
        ``"c-get"``, ``"c-move"`` or ``"wado-uri"``.
    expected : int
        Instances the C-FIND listed.
    retrieved : int
        Instances fetched this time (the rest were in the store already).
    instances : list of InstanceRecord
        The records now in the catalog for the instances listed, fetched or already stored.
    missing : tuple of str
        SOP Instance UIDs listed by the C-FIND that did not arrive: retrieve again to fetch
        just those.
    errors : list of str
        What went wrong on the way (refused unsolicited instances, unreadable files...).
    seconds : float
        Time taken.
    cancelled : bool
        The retrieve was cancelled (``cancel`` set) with instances still pending: they are in
        ``missing`` (none listed when it was cancelled before it started).
    jobs : list of str
        The IDs of its download jobs, one per series (``dicomnb.downloads``).
    unlisted : tuple of str
        SeriesInstanceUIDs whose instances were not listed yet (a pause, or a failure, while
        the study was being listed): their jobs list them when resumed.
    """

    node: str
    study_uid: str
    method: str
    expected: int = 0
    retrieved: int = 0
    instances: list[InstanceRecord] = field(default_factory=list)
    missing: tuple[str, ...] = ()
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False
    jobs: list[str] = field(default_factory=list)
    unlisted: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every instance listed is in the catalog, and every series was listed."""
        return not self.missing and not self.unlisted

    @property
    def message(self) -> str:
        stored = len(self.instances) - self.retrieved
        if self.cancelled and not self.expected:
            return f"cancelled before it started: nothing retrieved from {self.node} ({self.method})"
        if self.cancelled:
            text = (f"cancelled: {len(self.instances)} of {self.expected} instance{'' if self.expected == 1 else 's'} "
                    f"arrived from {self.node} ({self.method}) in {self.seconds:.1f} s")
            if stored:
                text += f", {stored} of them already in the store"
            if self.missing:
                text += f"; {len(self.missing)} missing: retrieve again to fetch them"
            return text + self.unlisted_words()
        text = (f"{self.retrieved} instance{'' if self.retrieved == 1 else 's'} retrieved from {self.node} "
                f"({self.method}) in {self.seconds:.1f} s")
        if stored:
            text += f", {stored} already in the store"
        if self.missing:
            text += f"; {len(self.missing)} of {self.expected} missing: retrieve again to fetch them"
        return text

    def unlisted_words(self) -> str:
        """The message's clause on the series not listed yet (empty when there are none)."""
        count = len(self.unlisted)
        return (f"; {count} series not listed yet: dicomnb.downloads.resume() lists and fetches "
                f"{'it' if count == 1 else 'them'}") if count else ""

    def to_json(self) -> dict[str, Any]:
        """``{"retrieved": N, "cancelled": bool, "missing": [...], "unlisted": [...], "instances": [...]}``
        (UIDs and path of each instance; the series not listed yet)."""
        return {
            "retrieved": self.retrieved,
            "cancelled": self.cancelled,
            "missing": list(self.missing),
            "unlisted": list(self.unlisted),
            "instances": [{name: getattr(r, name) for name in JSON_COLUMNS} for r in self.instances],
        }

    @property
    def frame(self) -> Any:
        """The instances as a DataFrame (the catalog's columns)."""
        from dicomnb.core.catalog import frame

        return frame(self.instances, InstanceRecord)

    def __repr__(self) -> str:
        return f"<RetrieveResult: {self.message}>"


class Landing:
    """Lands the instances of one retrieve: store, catalog, destination folder.

    Thread-safe: several associations (or HTTP connections) hand it instances at once.

    Parameters
    ----------
    expected : sequence of Expected
        The instances asked for.
    file_items : callable
        Files records into the catalog (``catalog.add_items``).
    source, origin : str
        What the records say they came from (``"dimse"`` or ``"wado-uri"``, the node's name).
    dest : path, optional
        A folder that gets a copy of every instance (same layout as the store).
    progress : callable, optional
        Called as ``progress(done, total)`` after each instance lands.
    overrides : Overrides, optional
        Values its records show in place of the files' own (:mod:`dicomnb.core.overrides`).

    Attributes
    ----------
    on_bytes : callable or None
        Called with the size of each instance fetched, before ``progress`` (a download's rate).
    """

    def __init__(self, expected: Sequence[Expected], file_items: Callable[[list[Item]], object], *,
                 source: str, origin: str, dest: str | os.PathLike[str] | None = None,
                 progress: Callable[[int, int], object] | None = None, overrides: Overrides = ()) -> None:
        self.expected = {e.sop_instance_uid: e for e in expected}
        self.overrides = overrides
        self.file_items = file_items
        self.source, self.origin = source, origin
        self.dest = Path(dest) if dest is not None else None
        self.progress = progress
        self.records: dict[str, InstanceRecord] = {}
        self.pending: set[str] = set(self.expected)
        self.retrieved = 0
        self.errors: list[str] = []
        self.started = time.monotonic()
        self.on_bytes: Callable[[int], object] | None = None
        self._lock = threading.Lock()

    # -- what the store holds already -----------------------------------------------------------
    def file_stored(self, known: Mapping[str, InstanceRecord] | None = None) -> int:
        """File the instances the store holds complete; return how many (they are not fetched).

        ``known``: records of stored instances read before (a download resumed in the process
        that paused it), by SOP Instance UID: their files are not read again.
        """
        found: list[Item] = []
        # each series' folder and what it holds: one listing, not one stat a file
        stored: dict[tuple[str, str], tuple[Path, frozenset[str]]] = {}
        for e in self._snapshot():
            sop, series = e.sop_instance_uid, (e.study_uid, e.series_uid)
            if series not in stored:
                folder = series_folder(*series)
                try:
                    stored[series] = folder, frozenset(os.listdir(folder))
                except OSError:  # no folder: nothing of the series is stored
                    stored[series] = folder, frozenset()
            folder, names = stored[series]
            if not names:
                continue
            name = instance_file_name(sop)
            if name not in names or not self.wanted(sop):
                continue  # a file has its final name only once complete: listed, it is whole
            path = folder / name
            record = known.get(sop) if known else None
            item = record if record is not None and record.path == str(path) else \
                classify_file(str(path), self.source, self.origin)
            if isinstance(item, InstanceRecord) and item.SOPInstanceUID == sop:
                item = overridden(item, self.overrides)
                with self._lock:
                    self.records[sop] = item
                    self.pending.discard(sop)
                found.append(item)
                self._copy_to_dest(e, path, None)
        if found:
            self.file_items(found)
        return len(found)

    def _snapshot(self) -> list[Expected]:
        """The instances expected, in the listing's order."""
        with self._lock:
            return list(self.expected.values())

    def pending_by_series(self) -> dict[str, list[Expected]]:
        """The instances still to fetch, by SeriesInstanceUID (in the C-FIND's order)."""
        by_series: dict[str, list[Expected]] = {}
        for e in self._snapshot():
            if self.wanted(e.sop_instance_uid):
                by_series.setdefault(e.series_uid, []).append(e)
        return by_series

    def series_complete_in_listing(self, series_uid: str) -> bool:
        """True when nothing of this series is in the store yet (fetch it whole)."""
        return all(self.wanted(e.sop_instance_uid) for e in self._snapshot() if e.series_uid == series_uid)

    # -- arrivals -------------------------------------------------------------------------------
    def wanted(self, sop_instance_uid: str) -> bool:
        with self._lock:
            return sop_instance_uid in self.pending

    def note(self, error: str) -> None:
        """Record something that went wrong (it ends up in ``RetrieveResult.errors``)."""
        with self._lock:
            self.errors.append(error)

    def land(self, sop_instance_uid: str, data: bytes | Sequence[bytes | memoryview], *,
             header: bytes = b"", sender: str = "") -> int:
        """Write one arrived instance, file it; return the C-STORE status to answer with.

        ``data`` is a whole Part 10 file, or (with ``header`` from :func:`part10_header`)
        the data set as received over DIMSE, in one piece or in fragments.
        """
        refusal = self._refusal(sop_instance_uid, sender)
        if refusal is not None:
            return refusal
        e = self.expected[sop_instance_uid]
        content = header + (data if isinstance(data, bytes) else b"".join(data))
        path = instance_path(e.study_uid, e.series_uid, sop_instance_uid)
        item = classify_head(content, len(content), None, lambda: io.BytesIO(content), str(path),
                             self.source, self.origin)
        record = self._checked(item, sop_instance_uid, sender)
        if record is None:
            return CANNOT_UNDERSTAND
        try:
            with atomic_writer(path) as f:
                f.write(content)
        except OSError as exc:
            with self._lock:
                self.errors.append(f"cannot write instance {sop_instance_uid!r} to {path}: "
                                   f"{exc.strerror or exc}")
            return OUT_OF_RESOURCES
        return self._landed(e, path, record, content)

    def land_file(self, temporary: str | os.PathLike[str], *, sender: str = "") -> int:
        """Land one arrived instance already written to ``temporary``; return the C-STORE status.

        For instances streamed to disk (WADO-RS): ``temporary`` is a complete Part 10 file
        under a temporary name in the store (the same file system, so the rename is atomic).
        The same checks as :meth:`land` are made, reading only the file's header: it must be
        a readable DICOM instance, one this retrieve waits for. It is then renamed into place
        (:func:`~dicomnb.core.store.instance_path`, named after the SOP Instance UID it holds)
        and filed; otherwise it is deleted. Either way ``temporary`` is gone afterwards.
        """
        temporary = Path(temporary)
        try:
            record = self._checked(classify_file(str(temporary), self.source, self.origin), "", sender)
            if record is None:
                return CANNOT_UNDERSTAND
            sop = record.SOPInstanceUID
            refusal = self._refusal(sop, sender)
            if refusal is not None:
                return refusal
            e = self.expected[sop]
            path = instance_path(e.study_uid, e.series_uid, sop)
            try:
                if temporary.parent != path.parent:  # streamed into its folder: made already
                    path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temporary, path)
            except OSError as exc:
                with self._lock:
                    self.errors.append(f"cannot move instance {sop!r} to {path}: {exc.strerror or exc}")
                return OUT_OF_RESOURCES
            return self._landed(e, path, record.replace(path=str(path)), None)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)  # refused or failed: nothing half-kept (gone already if moved)

    def _refusal(self, sop_instance_uid: str, sender: str) -> int | None:
        """The status to answer an instance with that is not (or no longer) awaited, else None."""
        with self._lock:
            if sop_instance_uid not in self.expected:
                self.errors.append(f"{sender or 'the archive'} sent instance {sop_instance_uid!r}, "
                                   "which was not asked for: refused")
                return REFUSED_NOT_AUTHORISED
            if sop_instance_uid not in self.pending:
                return SUCCESS  # sent twice: the first copy stands
        return None

    def _checked(self, item: Item, sop_instance_uid: str, sender: str) -> InstanceRecord | None:
        """``item`` if it is the instance ``sop_instance_uid`` (any instance if empty), else None
        with the reason noted."""
        if isinstance(item, InstanceRecord) and item.SOPInstanceUID == (sop_instance_uid or item.SOPInstanceUID):
            return item
        why = item.message if isinstance(item, ErrorRecord) else (
            f"its SOP Instance UID is {getattr(item, 'SOPInstanceUID', None)!r}"
            if isinstance(item, InstanceRecord) else "it is not DICOM")
        what = f"instance {sop_instance_uid!r}" if sop_instance_uid else "a part"
        with self._lock:
            self.errors.append(f"{what} from {sender or 'the archive'} is not usable: {why}")
        return None

    def _landed(self, e: Expected, path: Path, item: InstanceRecord, content: bytes | None) -> int:
        """File an instance now in the store at ``path``; copy it to the destination."""
        self._copy_to_dest(e, path, content)
        item = overridden(item, self.overrides)
        with self._lock:
            if e.sop_instance_uid not in self.pending:
                return SUCCESS
            self.pending.discard(e.sop_instance_uid)
            self.records[e.sop_instance_uid] = item
            self.retrieved += 1
            done = len(self.records)
        self.file_items([item])
        if self.on_bytes is not None:
            self.on_bytes(len(content) if content is not None else _size_of(path))
        if self.progress is not None:
            self.progress(done, len(self.expected))
        return SUCCESS

    def _copy_to_dest(self, e: Expected, path: Path, content: bytes | None) -> None:
        if self.dest is None:
            return
        target = instance_path(e.study_uid, e.series_uid, e.sop_instance_uid, root=self.dest)
        if target.is_file():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)  # same file system: instant, and complete or absent
        except OSError:
            if content is not None:
                atomic_write(target, content)
            else:  # a streamed instance may be large: copy it in pieces, never whole in memory
                with open(path, "rb") as source:
                    atomic_write(target, iter(lambda: source.read(_COPY_CHUNK), b""))

    # -- the end --------------------------------------------------------------------------------
    @property
    def missing(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sop for sop in self.expected if sop in self.pending)

    def result(self, node: str, study_uid: str, method: str) -> RetrieveResult:
        with self._lock:
            instances = [self.records[sop] for sop in self.expected if sop in self.records]
            errors = list(self.errors)
        return RetrieveResult(node=node, study_uid=study_uid, method=method, expected=len(self.expected),
                              retrieved=self.retrieved, instances=instances, missing=self.missing,
                              errors=errors, seconds=time.monotonic() - self.started)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
