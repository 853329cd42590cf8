"""DIMSE services with a remote archive: C-ECHO and C-FIND (C-MOVE and C-GET build on them).

pynetdicom is imported inside the functions (it is the optional ``network`` extra), and its
habit of signalling failure by state (``assoc.is_established == False``, empty status
datasets) is turned here, at the boundary, into dicomnb's errors:

- nobody listening, unknown host, TLS handshake refused, no answer in time →
  :class:`~dicomnb.core.errors.ConnectionFailed`;
- an A-ASSOCIATE-RJ → :class:`~dicomnb.core.errors.AssociationRejected`, with its result,
  source and reason in words;
- an A-ABORT, or the peer closing the connection → :class:`~dicomnb.core.errors.AssociationAborted`;
- a failure status → :class:`~dicomnb.core.errors.QueryFailed`.

When no connection could be opened, pynetdicom only logs why; a short probe (one TCP
connection, plus a TLS handshake for TLS nodes) then finds out which of the causes above
it was, so the message can say what to do.

C-FIND (:func:`find`, :func:`find_instances`) uses the Study Root model, the one both
lenient archives (Orthanc) and strict ones (dcmqrscp) offer, and keeps to what a strict
archive accepts: no PATIENT level, the unique key of every level above the one queried
(StudyInstanceUID at SERIES level, Study and Series Instance UIDs at IMAGE level), STUDY
level matching keys only at STUDY level. How it behaves:

- Rows stream as they arrive; the limit sends a C-CANCEL after N matches.
- Cancelling (a ``threading.Event``) is noticed while waiting for the archive too: the
  responses are polled from pynetdicom's message queue instead of a blocking read, so a
  cancel sends C-CANCEL and returns within a fraction of a second, aborting the association
  if the archive does not confirm the cancel at once.
- ModalitiesInStudy is optional for an archive, and dcmqrscp and pynetdicom's qrscp ignore
  it (they return every study). When a modality is asked for and a study comes back without
  ModalitiesInStudy, its series are asked for their Modality (on a second association, so the
  study query keeps streaming) and the study is kept only if one matches; the row then
  carries the ModalitiesInStudy found that way.
- Text is sent in the criteria's SpecificCharacterSet (UTF-8 by default) and each response
  decoded in its own; a response that declares none is decoded as the query's.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dicomnb.core.criteria import SearchCriteria
from dicomnb.core.deps import import_optional_dependency
from dicomnb.core.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionFailed,
    CriteriaError,
    QueryFailed,
)
from dicomnb.core.nodes import CallingNode, DicomNode
from dicomnb.core.query import (
    LEVELS,
    LIST_COLUMNS,
    FindOutcome,
    check_level,
    check_limit,
    find_identifier,
)
from dicomnb.sources import dimse_faults as faults
from dicomnb.sources import upperlayer as ul
from dicomnb.sources.dimse_faults import tls_context

__all__ = [
    "STUDY_ROOT_FIND",
    "VERIFICATION",
    "association",
    "echo",
    "find",
    "find_instances",
    "tls_context",
]

LOGGER = logging.getLogger(__name__)

#: Verification SOP Class (C-ECHO).
VERIFICATION = "1.2.840.10008.1.1"

#: Study Root Query/Retrieve Information Model - FIND.
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"

@dataclass
class _Seen:
    """What happened on the wire during association negotiation (filled by event handlers)."""

    opened: bool = False
    pdus: list[str] = field(default_factory=list)
    rejection: Any = None  # the A-ASSOCIATE-RJ as a primitive, if one arrived
    sockets: list[socket.socket] = field(default_factory=list)
    malformed: str = ""    # what was wrong with a PDU that is not valid DICOM, if one arrived

    def on_open(self, event: Any) -> None:
        self.opened = True
        # pynetdicom 3.0 drops (without closing) its socket when the peer hangs up or an
        # association attempt fails; keep it so it can be closed (pydicom/pynetdicom#979).
        raw = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        if isinstance(raw, socket.socket):
            self.sockets.append(raw)
            # pynetdicom 3.0.4 creates the socket with the network timeout, then clears it
            # once connected; its reactor then reads the rest of a PDU, once the header has
            # come, with no time limit. A peer that stops in the middle of a PDU (or
            # announces 4 GiB) holds that read forever, and the association's abort waits
            # for the reactor to stop: the caller hangs. Restoring the timeout bounds that
            # read (pynetdicom takes its expiry for the connection closing); it only reads
            # when data is ready, so an idle association is not affected.
            raw.settimeout(event.assoc.network_timeout)

    def on_data(self, event: Any) -> None:
        """Check each PDU as it arrives (pynetdicom's reactor thread), and abort on a bad one."""
        if self.malformed:
            return
        try:
            ul.check_pdu(event.data, [c.context_id for c in event.assoc.requestor.requested_contexts])
        except ul.PeerMalformed as exc:
            self.malformed = str(exc)
            # pynetdicom would go on: it fails inside its own handlers on an A-ASSOCIATE-AC
            # answering a context it never proposed, and after a P-DATA-TF it cannot decode
            # it waits for the connection to close while the request waits for its answer
            # until the timeout. Abort now: send the A-ABORT and close the connection (this
            # is the reactor's thread, the only one using the socket), and wake the request
            # the way pynetdicom does when an association is aborted (an empty message).
            for raw in self.sockets[-1:]:
                with contextlib.suppress(OSError):
                    raw.sendall(ul.ABORT_PDU)
                    raw.shutdown(socket.SHUT_RDWR)
            event.assoc.dimse.msg_queue.put((None, None))

    def on_pdu(self, event: Any) -> None:
        name = type(event.pdu).__name__
        self.pdus.append(name)
        if name == "A_ASSOCIATE_RJ":
            # Kept from the PDU itself: dcmqrscp closes its socket right after sending the
            # rejection, and pynetdicom may then report an abort instead of the rejection.
            self.rejection = event.pdu.to_primitive()

    def close_sockets(self) -> None:
        for raw in self.sockets:
            with contextlib.suppress(OSError):
                raw.close()


@contextlib.contextmanager
def association(
    node: DicomNode,
    calling: CallingNode | None = None,
    *,
    abstract_syntaxes: Sequence[str] = (VERIFICATION,),
    timeout: float = 10,
) -> Iterator[Any]:
    """Open an association with ``node``, yield it (a pynetdicom Association), release it.

    Parameters
    ----------
    node : DicomNode
        The archive to call.
    calling : CallingNode, optional
        Our AE title (default ``DICOMNB``).
    abstract_syntaxes : sequence of str
        SOP Class UIDs to propose (default transfer syntaxes).
    timeout : float
        Seconds allowed for connecting, for each ACSE/DIMSE message and for network silence.

    Raises
    ------
    ConnectionFailed, AssociationRejected, AssociationAborted
        The association could not be set up.
    DependencyMissing
        pynetdicom is not installed.
    """
    pynetdicom = import_optional_dependency("pynetdicom", "network")
    calling = calling or CallingNode()
    context = tls_context(node)
    ae = pynetdicom.AE(ae_title=calling.aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
    for uid in abstract_syntaxes:
        ae.add_requested_context(uid)
    seen = _Seen()
    handlers = [
        (pynetdicom.evt.EVT_CONN_OPEN, seen.on_open),
        (pynetdicom.evt.EVT_PDU_RECV, seen.on_pdu),
        (pynetdicom.evt.EVT_DATA_RECV, seen.on_data),
    ]
    started = time.monotonic()
    LOGGER.debug("associating with %s", faults.where_of(node))
    assoc = ae.associate(node.host, node.port, ae_title=node.aet, evt_handlers=handlers,
                         tls_args=(context, node.host) if context else None)
    try:
        if not assoc.is_established:
            elapsed = time.monotonic() - started
            if assoc.is_rejected or seen.rejection is not None:
                raise faults.rejection(node, calling, seen.rejection or assoc.acceptor.primitive)
            if seen.malformed:
                raise AssociationAborted(faults.malformed(faults.where_of(node), "the association request", seen.malformed))
            if not seen.opened:
                raise faults.probe(node, timeout, context)
            if "A_ASSOCIATE_AC" in seen.pdus:
                raise AssociationRejected(
                    f"{faults.where_of(node)} accepted the association but none of the services proposed "
                    f"({', '.join(abstract_syntaxes)}): it does not offer them to us",
                    result="no presentation context accepted", source="service user",
                    reason="no presentation context accepted",
                )
            if context is not None and not seen.pdus and elapsed < timeout * 0.9:
                # TLS 1.3 servers check the client certificate after the handshake: a
                # refusal shows up as the connection closing before any DICOM answer.
                raise ConnectionFailed(
                    f"{faults.where_of(node)}: TLS refused: the server closed the connection after the "
                    "TLS handshake: does it require a client certificate (--tls-cert/--tls-key), "
                    "and does it trust ours?"
                )
            if "A_ABORT_RQ" in seen.pdus or elapsed < timeout * 0.9:
                raise faults.dropped(node, calling, closed="A_ABORT_RQ" not in seen.pdus)
            raise ConnectionFailed(
                f"{faults.where_of(node)}: no answer to the association request within the timeout of "
                f"{timeout:g} s: is this port a DICOM server? (raise the timeout if it is slow)"
            )
        try:
            yield assoc
        except (AssociationAborted, QueryFailed) as exc:
            if seen.malformed:  # what the request's failure came from
                raise AssociationAborted(faults.malformed(faults.where_of(node), "our request", seen.malformed)) from exc
            raise
    finally:
        if assoc.is_established:
            assoc.release()
        if not assoc.is_established:  # released, aborted or never set up: pynetdicom is done
            seen.close_sockets()


def echo(node: DicomNode, calling: CallingNode | None = None, timeout: float = 10) -> float:
    """Check that ``node`` answers (C-ECHO); return the seconds from connecting to the answer.

    Parameters
    ----------
    node : DicomNode
        The archive to check.
    calling : CallingNode, optional
        Our AE title (default ``DICOMNB``).
    timeout : float
        Seconds allowed for connecting and for each message.

    Raises
    ------
    ConnectionFailed, AssociationRejected, AssociationAborted
        The association could not be set up (the message says what to check).
    QueryFailed
        The C-ECHO was answered with a failure status, or not answered.
    """
    started = time.monotonic()
    with association(node, calling, abstract_syntaxes=(VERIFICATION,), timeout=timeout) as assoc:
        status = assoc.send_c_echo()
        elapsed = time.monotonic() - started
        if "Status" not in status:
            if assoc.is_aborted:
                raise AssociationAborted(f"{faults.where_of(node)} aborted the association during the C-ECHO")
            raise QueryFailed(f"{faults.where_of(node)}: no answer to the C-ECHO within {timeout:g} s")
        code = int(status.Status)
        if code != 0x0000:
            raise QueryFailed(f"{faults.where_of(node)} answered the C-ECHO with status 0x{code:04X}", status=code)
    LOGGER.debug("C-ECHO %s: %.3f s", faults.where_of(node), elapsed)
    return elapsed


# --- C-FIND ------------------------------------------------------------------------------------

_POLL = 0.02          # seconds between two looks at the response queue (and the cancel Event)
_CANCEL_GRACE = 0.3   # seconds an archive gets to confirm a cancel before we abort
_PENDING = (0xFF00, 0xFF01)
_CANCEL_STATUS = 0xFE00
_UNIQUE_KEYS = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
_NOT_IN_ROWS = {"SpecificCharacterSet", "QueryRetrieveLevel"}
_TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC"}


def _dataset(identifier: Mapping[str, Any]) -> Any:
    """A pydicom Dataset from keyword → value (empty values: universal matching)."""
    from pydicom import Dataset
    from pydicom.datadict import tag_for_keyword

    ds = Dataset()
    charset = identifier.get("SpecificCharacterSet")
    if charset:  # first, so that the text values are written in it
        ds.SpecificCharacterSet = charset
    for keyword, value in identifier.items():
        if keyword == "SpecificCharacterSet":
            continue
        if tag_for_keyword(keyword) is None:
            raise CriteriaError(f"{keyword!r} is not a DICOM keyword: check its spelling")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                setattr(ds, keyword, None if value == "" else value)
        except (ValueError, TypeError, UserWarning) as exc:
            raise CriteriaError(f"{keyword} cannot be {value!r}: {exc}") from exc
    return ds


def _check_encodable(ds: Any) -> None:
    """Raise CriteriaError when a value cannot be written in the identifier's character set."""
    import_optional_dependency("pynetdicom", "network")
    from pynetdicom.dsutils import encode

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoded = encode(ds, True, True)
    problems = [str(w.message) for w in caught if "encod" in str(w.message).lower()]
    if encoded is None or problems:
        charset = ds.get("SpecificCharacterSet", "ISO_IR 6 (ASCII)")
        raise CriteriaError(f"the search cannot be written in the character set {charset}"
                            f"{': ' + problems[0] if problems else ''}: use ISO_IR 192 (UTF-8)")


def _redecode(value: Any, codec: str) -> Any:
    """Text that pydicom decoded as Latin-1 (its default), decoded as ``codec`` if it is valid there."""
    from pydicom.multival import MultiValue
    from pydicom.valuerep import PersonName

    if isinstance(value, MultiValue | list):
        return [_redecode(v, codec) for v in value]
    if isinstance(value, PersonName):
        original = getattr(value, "original_string", None)
        raw = original if isinstance(original, bytes) else str(value).encode("latin-1", "replace")
    elif isinstance(value, str):
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            return value
    else:
        return value
    try:
        return raw.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return value  # not valid in the query's character set: the archive's default it is


def _scalar(value: Any) -> Any:
    from pydicom import Dataset
    from pydicom.valuerep import PersonName

    if isinstance(value, Dataset):
        return _row(value, None)
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return None
    original = getattr(value, "original_string", None)  # DA, TM, DT with datetime conversion on
    return str(original if isinstance(original, str) else value)


def _python(keyword: str, value: Any) -> Any:
    from pydicom.multival import MultiValue
    from pydicom.sequence import Sequence as DicomSequence

    if value is None or value == "" or (isinstance(value, MultiValue | DicomSequence) and not len(value)):
        return [] if keyword in LIST_COLUMNS else None
    if isinstance(value, MultiValue | DicomSequence | list):
        return [_scalar(v) for v in value]
    return [_scalar(value)] if keyword in LIST_COLUMNS else _scalar(value)


def _row(identifier: Any, charset: str | None) -> dict[str, object]:
    """A response identifier as keyword → Python value, text decoded in the right charset."""
    from pydicom.charset import convert_encodings

    codec: str | None = None
    if not identifier.get("SpecificCharacterSet") and charset:
        # The response declares no character set: read its text as the query's when it is
        # valid there (pydicom reads it as Latin-1, which is undone byte for byte), else keep
        # it as read (an archive answering in its own default, Latin-1 say).
        encodings = convert_encodings(charset)
        codec = encodings[0] if len(encodings) == 1 else None
    row: dict[str, object] = {}
    for tag in list(identifier.keys()):
        try:
            elem = identifier[tag]
        except (ValueError, TypeError, KeyError, LookupError) as exc:
            LOGGER.debug("attribute %s of a C-FIND response cannot be read: %s", tag, exc)
            continue
        keyword = elem.keyword
        if not keyword or keyword in _NOT_IN_ROWS:
            continue
        value = elem.value
        if codec is not None and elem.VR in _TEXT_VRS:
            value = _redecode(value, codec)
        row[keyword] = _python(keyword, value)
    return row


def _wait(assoc: Any, cancel: threading.Event | None, seconds: float) -> str:
    """Wait for the next DIMSE message: ``"message"``, ``"cancel"`` or ``"timeout"``.

    pynetdicom's response generators block in one read for the whole DIMSE timeout; its
    message queue is watched here instead, so a cancel is noticed while waiting.
    """
    messages = assoc.dimse.msg_queue
    deadline = time.monotonic() + seconds
    pause = 0.0005  # short at first (answers usually follow quickly), then up to _POLL
    while messages.empty():
        if cancel is not None and cancel.is_set():
            return "cancel"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        if cancel is not None:
            cancel.wait(min(pause, remaining))
        else:
            time.sleep(min(pause, remaining))
        pause = min(pause * 2, _POLL)
    return "message"


def _wind_down(assoc: Any, responses: Iterator[Any], msg_id: int, seconds: float,
               cancel: threading.Event | None = None) -> tuple[int, int | None]:
    """Send C-CANCEL and read what the archive still sends, for at most ``seconds``.

    Returns the matches that arrived after the cancel and the final status (None when it
    did not come in time; the association is then aborted).
    """
    extra = 0
    if assoc.is_established:
        with contextlib.suppress(RuntimeError, ValueError, OSError):
            assoc.send_c_cancel(msg_id, query_model=STUDY_ROOT_FIND)
        deadline = time.monotonic() + seconds
        while _wait(assoc, cancel, deadline - time.monotonic()) == "message":
            status, _ = next(responses, (None, None))
            if status is None or "Status" not in status:
                break
            code = int(status.Status)
            if code not in _PENDING:
                return extra, code
            extra += 1
    if assoc.is_established:
        assoc.abort()
    return extra, None


def _stream(
    assoc: Any,
    where: str,
    dataset: Any,
    charset: str | None,
    *,
    limit: int = 0,
    cancel: threading.Event | None = None,
    timeout: float = 30,
    accept: Callable[[dict[str, object]], bool] | None = None,
    msg_id: int = 1,
) -> Generator[dict[str, object], None, FindOutcome]:
    """One C-FIND on an open association: yield the rows, return how it ended."""
    try:
        responses = assoc.send_c_find(dataset, STUDY_ROOT_FIND, msg_id=msg_id)
    except (RuntimeError, ValueError, OSError) as exc:
        raise QueryFailed(f"{where}: the C-FIND could not be sent: {exc}") from exc
    matches = 0
    done = False
    # Some archives (pynetdicom's qrscp) answer a STUDY or SERIES query once per instance:
    # one row per entity is kept, by the level's unique key.
    unique = _UNIQUE_KEYS.get(str(getattr(dataset, "QueryRetrieveLevel", "")), "")
    seen: set[object] = set()
    try:
        while True:
            state = _wait(assoc, cancel, timeout)
            if state == "cancel":
                done = True
                _wind_down(assoc, responses, msg_id, _CANCEL_GRACE)
                return FindOutcome(matches, cancelled=True)
            if state == "timeout":
                done = True
                assoc.abort()
                raise QueryFailed(f"{where}: no answer to the C-FIND within {timeout:g} s: the archive "
                                  "may be busy or the search too wide: narrow it or raise the timeout")
            status, identifier = next(responses, (None, None))
            if status is None or "Status" not in status:
                done = True
                if assoc.is_established:
                    assoc.abort()
                raise AssociationAborted(
                    f"{where} aborted the association during the C-FIND, closed the connection or "
                    "sent an answer that could not be read: try again, and see the archive's log"
                )
            code = int(status.Status)
            if code not in _PENDING:
                done = True
                if code == _CANCEL_STATUS:
                    return FindOutcome(matches, cancelled=True, status=code)
                if code == 0x0000 or code == 0x0001 or 0xB000 <= code <= 0xBFFF:  # success, warnings
                    return FindOutcome(matches, status=code)
                raise faults.failure(where, code, status)
            if identifier is None:
                LOGGER.warning("%s: a C-FIND response that could not be decoded was skipped", where)
                continue
            row = _row(identifier, charset)
            key = row.get(unique)
            if key:
                if key in seen:
                    LOGGER.debug("%s: a second answer for %s %s was skipped", where, unique, key)
                    continue
                seen.add(key)
            if accept is not None and (not accept(row) or (cancel is not None and cancel.is_set())):
                continue
            matches += 1
            yield row
            if limit and matches >= limit:
                done = True
                extra, final = _wind_down(assoc, responses, msg_id, timeout, cancel)
                return FindOutcome(matches, limited=extra > 0 or final != 0x0000, status=final)
    finally:
        if not done:  # the caller stopped reading (or an error): stop the archive too
            _wind_down(assoc, responses, msg_id, _CANCEL_GRACE)


class _ModalityCheck:
    """Keeps the studies with one of ``wanted`` modalities, asking their series when needed."""

    def __init__(self, node: DicomNode, calling: CallingNode | None, wanted: frozenset[str],
                 charset: str, cancel: threading.Event | None, timeout: float,
                 stack: contextlib.ExitStack) -> None:
        self.node, self.calling, self.wanted, self.charset = node, calling, wanted, charset
        self.cancel, self.timeout, self.stack = cancel, timeout, stack
        self.assoc: Any = None
        self.looked_up = 0
        self.msg_id = 0

    def __call__(self, row: dict[str, object]) -> bool:
        modalities = row.get("ModalitiesInStudy")
        uid = row.get("StudyInstanceUID")
        if not modalities and isinstance(uid, str) and uid:
            if self.assoc is None:
                self.assoc = self.stack.enter_context(association(
                    self.node, self.calling, abstract_syntaxes=(STUDY_ROOT_FIND,), timeout=self.timeout))
            identifier = {"QueryRetrieveLevel": "SERIES", "SpecificCharacterSet": self.charset,
                          "StudyInstanceUID": uid, "SeriesInstanceUID": "", "Modality": ""}
            self.msg_id += 1
            series = _stream(self.assoc, faults.where_of(self.node), _dataset(identifier), self.charset,
                             cancel=self.cancel, timeout=self.timeout, msg_id=self.msg_id)
            found = {str(r["Modality"]) for r in series if r.get("Modality")}
            modalities = row["ModalitiesInStudy"] = sorted(found)
            self.looked_up += 1
        if not isinstance(modalities, list):
            return True  # nothing to judge by: keep it rather than hide it
        return bool(self.wanted & set(modalities))


def find(
    node: DicomNode,
    query: SearchCriteria | Mapping[str, Any] | None = None,
    level: str = "study",
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    limit: int = 0,
    cancel: threading.Event | None = None,
    calling: CallingNode | None = None,
    timeout: float = 30,
    now: datetime | None = None,
) -> Generator[dict[str, object], None, FindOutcome]:
    """Search ``node`` (Study Root C-FIND) and yield one row per match as it arrives.

    Parameters
    ----------
    node : DicomNode
        The archive to ask.
    query : SearchCriteria or mapping, optional
        The criteria (matched at STUDY level; below it only the modality is used), or a
        ready identifier (DICOM keyword → value, ``""`` for universal matching) sent as it
        is. None: everything.
    level : {"study", "series", "image"}
        The QueryRetrieveLevel (ignored for a ready identifier that has one).
    study_uid, series_uid : str, optional
        The study (required below STUDY level) and the series (IMAGE level) to look in.
    limit : int
        Stop after this many matches, sending a C-CANCEL (0: no limit).
    cancel : threading.Event, optional
        Set it (from another thread) to stop: C-CANCEL is sent and the generator returns
        at once, also while it is waiting for the archive.
    calling : CallingNode, optional
        Our AE title (default ``DICOMNB``).
    timeout : float
        Seconds allowed for connecting and between two answers of the archive.
    now : datetime, optional
        The time a named period is computed at (default: now).

    Yields
    ------
    dict
        DICOM keyword → value (str, int, float, list; None when returned empty).

    Returns
    -------
    FindOutcome
        As the generator's return value: whether the limit was hit, whether it was
        cancelled, the final status.

    Raises
    ------
    CriteriaError
        Criteria that cannot be sent (no study UID below STUDY level, a value the
        character set cannot hold, an unknown keyword).
    ConnectionFailed, AssociationRejected, AssociationAborted
        The association failed or was aborted.
    QueryFailed
        A failure status (``status`` holds it: 0xA700 out of resources, 0xA900 identifier
        does not match SOP class, 0xC000-0xCFFF unable to process) or no answer in time.
    """
    limit = check_limit(limit)
    wanted: frozenset[str] = frozenset()
    if isinstance(query, Mapping):
        identifier = dict(query)
        identifier.setdefault("QueryRetrieveLevel", LEVELS[check_level(level)])
        charset = identifier.get("SpecificCharacterSet") or None
        level = str(identifier["QueryRetrieveLevel"]).lower()
    else:
        if query is not None and not isinstance(query, SearchCriteria):
            raise CriteriaError(f"a query is SearchCriteria or a mapping, not {type(query).__name__}")
        criteria = query or SearchCriteria()
        level = check_level(level)
        identifier = find_identifier(criteria, level, study_uid=study_uid, series_uid=series_uid, now=now)
        charset = criteria.specific_character_set
        wanted = frozenset(criteria.modalities) if level in ("study", "series") else frozenset()
    dataset = _dataset(identifier)
    _check_encodable(dataset)
    where = faults.where_of(node)
    with contextlib.ExitStack() as stack:
        assoc = stack.enter_context(association(node, calling, abstract_syntaxes=(STUDY_ROOT_FIND,),
                                                timeout=timeout))
        accept: Callable[[dict[str, object]], bool] | None = None
        check: _ModalityCheck | None = None
        if wanted and level == "study":
            check = _ModalityCheck(node, calling, wanted, charset or "ISO_IR 192", cancel, timeout, stack)
            accept = check
        elif wanted:
            def accept(row: dict[str, object]) -> bool:
                return row.get("Modality") in wanted
        started = time.monotonic()
        outcome = yield from _stream(assoc, where, dataset, charset, limit=limit, cancel=cancel,
                                     timeout=timeout, accept=accept)
        LOGGER.debug("C-FIND %s %s: %d matches in %.3f s", where, level, outcome.matches,
                     time.monotonic() - started)
        if check is not None and check.looked_up:
            note = (f"{node.name} does not return ModalitiesInStudy: the modality was checked on the "
                    f"series of {check.looked_up} {'study' if check.looked_up == 1 else 'studies'}")
            outcome = FindOutcome(outcome.matches, outcome.limited, outcome.cancelled, outcome.status,
                                  (*outcome.notes, note))
    return outcome


def find_instances(
    node: DicomNode,
    study_uid: str,
    series_uids: Sequence[str] | None = None,
    *,
    calling: CallingNode | None = None,
    timeout: float = 30,
) -> list[dict[str, object]]:
    """The instances (IMAGE-level rows) of a study, or of some of its series.

    Asks the study's series first (unless ``series_uids`` are given), then each series'
    instances, on one association: the hierarchical way every archive accepts.

    Raises
    ------
    CriteriaError, ConnectionFailed, AssociationRejected, AssociationAborted, QueryFailed
        As :func:`find`.
    """
    where = faults.where_of(node)
    charset = SearchCriteria().specific_character_set
    rows: list[dict[str, object]] = []
    with association(node, calling, abstract_syntaxes=(STUDY_ROOT_FIND,), timeout=timeout) as assoc:
        msg_id = 1
        if series_uids is None:
            series = _stream(assoc, where, _dataset(find_identifier(None, "series", study_uid=study_uid)),
                             charset, timeout=timeout, msg_id=msg_id)
            series_uids = [str(r["SeriesInstanceUID"]) for r in series if r.get("SeriesInstanceUID")]
        for uid in dict.fromkeys(series_uids):
            msg_id += 1
            identifier = find_identifier(None, "image", study_uid=study_uid, series_uid=uid)
            rows.extend(_stream(assoc, where, _dataset(identifier), charset, timeout=timeout,
                                msg_id=msg_id))
    return rows
