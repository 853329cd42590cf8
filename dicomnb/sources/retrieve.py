"""Retrieve over DIMSE: C-GET, and C-MOVE into our own Storage SCP.

Both run on :mod:`dicomnb.sources.upperlayer` (not pynetdicom: see there why) and hand
every instance that arrives to a :class:`~dicomnb.core.retrieval.Landing`, which accepts
only the instances the C-FIND listed, writes them atomically and files them.

- Work is split per series (one request each, 3 at a time on their own associations):
  a series is the unit a later download manager pauses and resumes, and a series whose
  instances are partly in the store is asked for at IMAGE level, for the missing ones only.
- C-GET proposes, for the SOP classes the C-FIND found, one presentation context per
  (SOP class, transfer syntax) of :mod:`dicomnb.core.tcs`, so the archive can send each
  instance as it holds it; beyond 128 contexts, one per SOP class with all its syntaxes;
  beyond 127 SOP classes, the series is asked for in several IMAGE-level requests. Each SOP
  class gets an SCP role selection (without it archives answer 0xA702). An archive that
  lists no SOP class (dcmqrscp keeps none in its index) gets the common storage classes
  proposed (:data:`~dicomnb.core.tcs.COMMON_STORAGE`), as getscu does.
- C-MOVE starts our Storage SCP on the calling node's address and port for the duration
  of the retrieve; it accepts associations called with our AE title only, and instances
  that the retrieve waits for only: anything else is refused (0x0124) and reported.
- Cancel (a :class:`threading.Event` set from another thread) sends a C-CANCEL-RQ on
  every association with a request running, lands what still arrives before the final
  response, gives the archive :data:`CANCEL_GRACE` to end, then cuts off what is still
  open (A-ABORT), and never begins the series not begun: they stay pending. It is noticed
  within :data:`_WATCH` also while the archive is silent or an association is being set up,
  and at once when it is a download job's pause (a
  :class:`~dicomnb.core.downloads.CancelEvent`).

Failures become dicomnb's errors: :class:`~dicomnb.core.errors.ConnectionFailed` (refused,
unreachable, TLS refused, no answer), :class:`~dicomnb.core.errors.AssociationRejected`,
:class:`~dicomnb.core.errors.AssociationAborted`, :class:`~dicomnb.core.errors.QueryFailed`
with the DIMSE ``status`` (0xA701/0xA702 out of resources, 0xA801 unknown move destination,
0xA900, 0xC000-0xCFFF) or ``status=None`` when the archive went silent for ``timeout``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import SimpleNamespace

from dicomnb.core.downloads import CANCEL_POLL, CancelEvent
from dicomnb.core.errors import (
    AssociationAborted,
    ConfigError,
    ConnectionFailed,
    DicomnbError,
    QueryFailed,
)
from dicomnb.core.nodes import CallingNode, DicomNode
from dicomnb.core.retrieval import Expected, Landing, StudyContents, part10_header
from dicomnb.core.tcs import IMPLICIT_LE, TransferSyntaxes, common_storage_classes
from dicomnb.sources import dimse_faults as faults
from dicomnb.sources import upperlayer as ul
from dicomnb.sources.dimse_faults import tls_context
from dicomnb.sources.storescp import storage_scp

__all__ = ["GET_MODEL", "MOVE_MODEL", "list_instances", "retrieve_dimse"]

LOGGER = logging.getLogger(__name__)

#: Study Root Query/Retrieve Information Model - GET and - MOVE.
FIND_MODEL = "1.2.840.10008.5.1.4.1.2.2.1"
GET_MODEL = "1.2.840.10008.5.1.4.1.2.2.3"
MOVE_MODEL = "1.2.840.10008.5.1.4.1.2.2.2"
VERIFICATION = "1.2.840.10008.1.1"

#: SERIES-level keys asked for while listing a study: what labels a series' download.
SERIES_LABEL_KEYS = ("Modality", "SeriesNumber", "SeriesDescription")
MAX_CONTEXTS = 128          # presentation context IDs are the odd numbers 1-255
MAX_PDU = ul.MAX_PDU        # what we accept per PDU: large, so few PDUs per instance
PARALLEL = 3                # series retrieved at once (each on its own association)
_PENDING = (0xFF00, 0xFF01)

# What archives answer to a C-CANCEL-RQ (measured here, series of 40 CT_small copies):
# - Orthanc 1.10.1: 0xFE00 (Cancel, with Remaining) within 1-2 ms, after one more C-STORE (C-GET),
#   or one or two more to our SCP, whose association it releases first (C-MOVE).
# - dcmqrscp (DCMTK 3.6.7): 0xFE00 at once, no further sub-operation (C-MOVE: ours released first).
# - pynetdicom's qrscp: 0xFE00 after the sub-operation under way (~45 ms), with an identifier.
# Orthanc and dcmqrscp ignore a late C-CANCEL (after their final response) and answer the release.
CANCEL_GRACE = 1.0   # seconds the archive gets, once cancelled, to end its requests before we abort
_WATCH = CANCEL_POLL  # seconds between two looks at the cancel event while the series run
_LOCK_WAIT = 0.2     # seconds the watching thread waits for an association's send lock

_RESULTS = {1: "rejected permanent", 2: "rejected transient"}
_SOURCES = {1: "service user", 2: "service provider (acse)", 3: "service provider (presentation)"}
_REASONS = {1: {1: "no reason given", 2: "application context name not supported",
                3: "calling ae title not recognised", 7: "called ae title not recognised"},
            2: {1: "no reason given", 2: "protocol version not supported"},
            3: {1: "temporary congestion", 2: "local limit exceeded"}}


# --- association set-up ------------------------------------------------------------------------

def _open(node: DicomNode, calling: CallingNode, contexts: list[ul.PresentationContext],
          roles: dict[str, tuple[int, int]], timeout: float, watch: _Cancel | None = None) -> ul.Connection:
    """Associate with ``node`` proposing ``contexts``; return the connection (contexts answered),
    tracked by ``watch`` (a retrieve's cancel) from the moment it is open."""
    where = faults.where_of(node)
    tls = tls_context(node)
    try:
        sock = socket.create_connection((node.host, node.port), timeout=timeout)
    except OSError as exc:
        raise faults.probe(node, timeout, None) from exc
    if tls is not None:
        try:
            sock = tls.wrap_socket(sock, server_hostname=node.host)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise faults.probe(node, timeout, tls) from exc
    conn = ul.Connection(sock, timeout, max_pdu=MAX_PDU)
    link = watch.track(conn) if watch is not None else None
    request = ul.Association(called=node.aet, calling=calling.aet, contexts=contexts, roles=roles)
    try:
        (link or conn).send(request.encode(ul.ASSOCIATE_RQ, MAX_PDU))
        kind, body = conn.read_pdu()
        answer = ul.Association.decode(body) if kind == ul.ASSOCIATE_AC else None
        if answer is not None:
            answer.check_answers([c.id for c in contexts])
    except ul.PeerMalformed as exc:
        _abort(conn, link)
        raise AssociationAborted(faults.malformed(where, "the association request", exc)) from exc
    except (ul.PeerAborted, ul.PeerClosed) as exc:
        _close(conn, link)
        if tls is not None and isinstance(exc, ul.PeerClosed):
            raise ConnectionFailed(
                f"{where}: TLS refused: the server closed the connection after the TLS handshake: "
                "does it require a client certificate (--tls-cert/--tls-key), and does it trust ours?"
            ) from exc
        raise faults.dropped(node, calling, closed=isinstance(exc, ul.PeerClosed)) from exc
    except ul.PeerSilent as exc:
        _close(conn, link)
        raise ConnectionFailed(f"{where}: no answer to the association request within the timeout of "
                               f"{timeout:g} s: is this port a DICOM server? (raise the timeout if it "
                               "is slow)") from exc
    if kind == ul.ASSOCIATE_RJ:
        _close(conn, link)
        result, source, reason = (body[1], body[2], body[3]) if len(body) >= 4 else (1, 1, 1)
        primitive = SimpleNamespace(result_str=_RESULTS.get(result, f"result {result}"),
                                    source_str=_SOURCES.get(source, f"source {source}"),
                                    reason_str=_REASONS.get(source, {}).get(reason, f"reason {reason}"))
        raise faults.rejection(node, calling, primitive)
    if answer is None:
        _abort(conn, link)
        raise AssociationAborted(f"{where} answered the association request with PDU type 0x{kind:02X}")
    proposed = {c.id: c for c in contexts}
    for got in answer.contexts:
        proposed[got.id].result, proposed[got.id].transfer_syntax = got.result, got.transfer_syntax
    conn.peer_max_pdu = answer.max_pdu
    return conn


def _close(conn: ul.Connection, link: _Link | None = None) -> None:
    if link is not None:
        link.watch.forget(conn)  # first: the cancel must never reach a closed socket
    conn.close()


def _abort(conn: ul.Connection, link: _Link | None = None) -> None:
    with contextlib.suppress(ul.PeerClosed, ul.PeerSilent):
        (link or conn).send(ul.ABORT_PDU)
    _close(conn, link)


def _release(conn: ul.Connection, link: _Link | None = None) -> None:
    """Release the association (bounded: an archive that does not answer is aborted)."""
    try:
        (link or conn).send(ul.RELEASE_RQ_PDU)
        while True:
            kind, _ = conn.read_pdu()
            if kind == ul.RELEASE_RP:
                break
    except (ul.PeerAborted, ul.PeerClosed, ul.PeerSilent):
        pass
    _close(conn, link)


# --- cancel ------------------------------------------------------------------------------------

class _Link:
    """One association of a retrieve, as its cancel reaches it.

    Its worker thread reads from it while the thread watching the retrieve may send the
    C-CANCEL-RQ, so every PDU goes out under :attr:`lock` (a C-STORE-RSP and a C-CANCEL never
    interleave). Over TLS the watcher sends nothing (an OpenSSL connection is not safe to use
    from two threads at once): the worker sends the C-CANCEL after the next message, and an
    archive silent until the deadline is cut off.
    """

    def __init__(self, conn: ul.Connection, watch: _Cancel) -> None:
        self.conn, self.watch = conn, watch
        self.tls = isinstance(conn.sock, ssl.SSLSocket)
        self.lock = threading.Lock()
        self.request: tuple[int, int] | None = None   # (context ID, MessageID) of the request running
        self.cancelled = False                          # its C-CANCEL went out
        self.cut = False                                # cut off at the deadline

    def send(self, pdu: bytes) -> None:
        with self.lock:
            self.conn.send(pdu)

    def send_message(self, context_id: int, command: bytes, data_set: bytes | None = None) -> None:
        with self.lock:
            self.conn.send_message(context_id, command, data_set)

    def start(self, context_id: int, message_id: int, command: bytes, identifier: bytes) -> bool:
        """Send the request, unless the retrieve is cancelled already (then False)."""
        with self.lock:
            if self.cut or self.watch.stopping():
                return False
            self.conn.send_message(context_id, command, identifier)
            self.request = (context_id, message_id)
        return True

    def cancel(self, wait_lock: float = -1) -> None:
        """Send the C-CANCEL-RQ of the running request (once), waiting ``wait_lock`` s at most for the lock."""
        if self.lock.acquire(timeout=wait_lock):
            try:
                if self.request is not None and not (self.cancelled or self.cut):
                    self.cancelled = True
                    with contextlib.suppress(ul.PeerClosed, ul.PeerSilent):  # its worker meets it reading
                        self.conn.send_message(self.request[0], ul.cancel_request(self.request[1]))
            finally:
                self.lock.release()

    def finish(self) -> None:
        """The final response came: nothing to cancel any more."""
        with self.lock:
            self.request = None

    def cut_off(self, how: int = socket.SHUT_RD) -> None:
        """Shut the socket (for reading: its worker wakes up, and sends the A-ABORT itself)."""
        self.cut = True
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.conn.sock, how)  # not SSLSocket's: it drops TLS first


class _Cancel:
    """The cancel of one retrieve: its event, and the associations it must reach."""

    def __init__(self, event: threading.Event | None) -> None:
        self.event = event
        self.took_effect = False     # something was left undone because of it
        self.deadline = 0.0
        self._lock = threading.Lock()
        self._links: dict[ul.Connection, _Link] = {}
        self._past = False           # the deadline passed: an association opened now is cut off at once

    def stopping(self) -> bool:
        """True when the retrieve is cancelled (the caller then leaves something undone)."""
        if self.event is None or not self.event.is_set():
            return False
        if not self.took_effect:
            self.took_effect, self.deadline = True, time.monotonic() + CANCEL_GRACE
        return True

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def track(self, conn: ul.Connection) -> _Link:
        with self._lock:
            link = self._links[conn] = _Link(conn, self)
            if self._past:
                link.cut_off(socket.SHUT_RDWR)
        return link

    def link_of(self, conn: ul.Connection) -> _Link:
        return self._links[conn]  # its own worker asks: it is there

    def forget(self, conn: ul.Connection) -> None:
        with self._lock:
            self._links.pop(conn, None)

    def follow(self, futures: Sequence[Future[None]]) -> None:
        """Wait for the series to end; once cancelled, reach them, and end it all by the deadline.

        The series not begun are dropped; each running request is sent a C-CANCEL-RQ (over TLS
        its worker sends it); what is still open :data:`CANCEL_GRACE` later is cut off.
        """
        pending = set(futures)
        woke = threading.Event()  # a series ended, or (a job's pause) the cancel was set
        for future in futures:
            future.add_done_callback(lambda _: woke.set())
        unsubscribe = self.event.subscribe(woke.set) if isinstance(self.event, CancelEvent) else None
        poll = None if self.event is None or unsubscribe is not None else _WATCH  # a plain Event is looked at
        try:
            while pending and not self.stopping():
                woke.wait(poll)
                woke.clear()
                pending = {future for future in pending if not future.done()}
        finally:
            if unsubscribe is not None:
                unsubscribe()
        if not pending:
            return
        for future in pending:
            future.cancel()
        with self._lock:  # held: a worker closes its socket only once forgotten (no fd reused under us)
            for link in self._links.values():
                if not link.tls:
                    link.cancel(_LOCK_WAIT)
        for how in (socket.SHUT_RD, socket.SHUT_RDWR):  # RDWR: for a worker stuck sending to a deaf archive
            _, pending = wait(pending, timeout=self.remaining() if how == socket.SHUT_RD else _LOCK_WAIT)
            if not pending:
                return
            with self._lock:
                self._past = True
                for link in self._links.values():
                    link.cut_off(how)
        wait(pending)


# --- statuses ----------------------------------------------------------------------------------

def _status_words(code: int, verb: str, calling: CallingNode) -> str:
    if code == 0xA701:
        return "out of resources: unable to calculate the number of matches: try again later"
    if code == 0xA702:
        return ("out of resources: unable to perform sub-operations: the archive could not send the "
                "instances (for C-GET: it found no presentation context or SCP role for them; "
                "try C-MOVE)")
    if code == 0xA801:
        return (f"move destination unknown: the archive does not know our AE title {calling.aet}: ask its "
                f"administrator to declare {calling.aet} at {calling.host}:{calling.port}, or use C-GET")
    if code == 0xA900:
        return "identifier does not match SOP class: the archive refuses the keys sent"
    if 0xC000 <= code <= 0xCFFF:
        hint = (f"if the archive does not know {calling.aet} as a move destination, ask its "
                "administrator to declare it, or use C-GET" if verb == "C-MOVE" else "see the archive's log")
        return f"unable to process: {hint}"
    if code == 0x0122:
        return f"SOP class not supported: the archive does not offer Study Root {verb}"
    if code == 0x0124:
        return f"not authorised: ask the archive's administrator to let our AE title {calling.aet} retrieve"
    return "failure: see the archive's log"


def _encode(identifier: dict[str, object]) -> bytes:
    """An identifier (keyword → value) encoded in implicit VR little endian."""
    from pydicom import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = Dataset()
    for keyword, value in identifier.items():
        setattr(ds, keyword, value)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)
    return fp.getvalue()


# --- listing what to retrieve (C-FIND) ---------------------------------------------------------

def _find(conn: ul.Connection, where: str, identifier: dict[str, object], msg_id: int) -> list[object]:
    """One C-FIND on an open association: the response identifiers (pydicom datasets)."""
    from io import BytesIO

    from pydicom.filereader import read_dataset

    conn.send_message(1, ul.retrieve_request(ul.C_FIND_RQ, FIND_MODEL, msg_id), _encode(identifier))
    found: list[object] = []
    while True:
        message = conn.read_message()
        if message.command_field != ul.C_FIND_RSP:
            continue
        code = message.number(ul.STATUS)
        if code in _PENDING:
            if message.data:
                found.append(read_dataset(BytesIO(b"".join(message.data)), True, True))
            continue
        if code == 0x0000 or 0xB000 <= code <= 0xBFFF:
            return found
        raise faults.failure(where, code, {"ErrorComment": message.text(ul.ERROR_COMMENT)})


def list_instances(node: DicomNode, study_uid: str, series_uids: Sequence[str] | None = None, *,
                   calling: CallingNode | None = None, timeout: float = 30) -> StudyContents:
    """The instances of a study (or some of its series) to retrieve, by C-FIND.

    The series are asked first (unless given), then each one's instances (SOP Instance UIDs)
    at IMAGE level, as strict archives require. The SOP classes (for C-GET's presentation
    contexts) come from the study's SOPClassesInStudy when the archive returns it, otherwise
    from SOPClassUID at IMAGE level: Orthanc reads every file to answer the latter (1.2 ms
    per instance, more than sending it), and answers the former from its index.

    Returns
    -------
    StudyContents
        The instances (``sop_class_uid`` empty when it was not asked), the study's SOP
        classes (empty when the archive did not say), the instance numbers and the series'
        rows (modality, number, description: a download's label).

    Raises
    ------
    ConnectionFailed, AssociationRejected, AssociationAborted, QueryFailed
        As :func:`retrieve_dimse`.
    """
    calling = calling or CallingNode()
    where = faults.where_of(node)
    find_context = ul.PresentationContext(1, FIND_MODEL, [IMPLICIT_LE])
    conn = _open(node, calling, [find_context], {}, timeout)
    try:
        if not find_context.accepted:
            raise QueryFailed(f"{where} does not offer Study Root C-FIND", status=0x0122)
        classes: list[str] = []
        try:
            studies = _find(conn, where, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid,
                                          "SOPClassesInStudy": None}, 1)
            for ds in studies:
                value = getattr(ds, "SOPClassesInStudy", None) or []
                classes = [str(v) for v in ([value] if isinstance(value, str) else value) if v]
        except QueryFailed:  # an archive that refuses the key: ask SOPClassUID per instance
            classes = []
        contents = StudyContents(sop_classes=classes)
        rows = _find(conn, where, {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": study_uid,
                                   "SeriesInstanceUID": None, **dict.fromkeys(SERIES_LABEL_KEYS)}, 2)
        for ds in rows:
            uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
            if uid:
                contents.series[uid] = {key: getattr(ds, key, None) for key in SERIES_LABEL_KEYS}
        if series_uids is None:
            series_uids = list(contents.series)
        image_keys: dict[str, object] = {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": study_uid,
                                         "SeriesInstanceUID": None, "SOPInstanceUID": None, "InstanceNumber": None}
        if not classes:
            image_keys["SOPClassUID"] = None
        for number, series_uid in enumerate(dict.fromkeys(series_uids), 3):
            keys = {**image_keys, "SeriesInstanceUID": series_uid}
            contents.add_rows([{"SOPInstanceUID": getattr(ds, "SOPInstanceUID", ""), "SeriesInstanceUID": series_uid,
                                "SOPClassUID": getattr(ds, "SOPClassUID", ""),
                                "InstanceNumber": getattr(ds, "InstanceNumber", None)}
                               for ds in _find(conn, where, keys, number % 65536)], study_uid)
    except ul.PeerMalformed as exc:
        _abort(conn)
        raise AssociationAborted(faults.malformed(where, "the C-FIND", exc)) from exc
    except (ul.PeerAborted, ul.PeerClosed, ul.Release) as exc:
        conn.close()
        raise AssociationAborted(f"{where} aborted the association during the C-FIND, or closed the "
                                 "connection: try again, and see the archive's log") from exc
    except ul.PeerSilent as exc:
        _abort(conn)
        raise QueryFailed(f"{where}: no answer to the C-FIND within {timeout:g} s: the archive may be busy: "
                          "raise the timeout", status=None) from exc
    except BaseException:
        _abort(conn)
        raise
    _release(conn)
    return contents


@dataclass
class _Unit:
    """One retrieve request: a series, whole or some of its instances."""

    study_uid: str
    series_uid: str
    instances: list[Expected]
    whole: bool
    sop_classes: tuple[str, ...] = ()

    def identifier(self) -> bytes:
        """The request's identifier, encoded in implicit VR little endian."""
        keys: dict[str, object] = {"QueryRetrieveLevel": "SERIES" if self.whole else "IMAGE",
                                   "StudyInstanceUID": self.study_uid, "SeriesInstanceUID": self.series_uid}
        if not self.whole:
            uids = [e.sop_instance_uid for e in self.instances]
            keys["SOPInstanceUID"] = uids if len(uids) > 1 else uids[0]
        return _encode(keys)


def _units(landing: Landing, study_classes: Sequence[str]) -> list[_Unit]:
    """The requests that fetch what is pending: per series; split when it has >127 SOP classes."""
    units = []
    for series_uid, pending in landing.pending_by_series().items():
        classes = list(dict.fromkeys(e.sop_class_uid for e in pending if e.sop_class_uid))
        whole = landing.series_complete_in_listing(series_uid) and len(classes) < MAX_CONTEXTS
        if whole or not classes:
            units.append(_Unit(pending[0].study_uid, series_uid, pending, whole,
                               tuple(classes or study_classes or common_storage_classes())))
            continue
        for start in range(0, len(classes), MAX_CONTEXTS - 1):
            chunk = set(classes[start:start + MAX_CONTEXTS - 1])
            units.append(_Unit(pending[0].study_uid, series_uid,
                               [e for e in pending if e.sop_class_uid in chunk], False, tuple(chunk)))
    return units


def storage_contexts(sop_classes: Sequence[str], tcs: TransferSyntaxes,
                     first: Sequence[ul.PresentationContext] = ()) -> list[ul.PresentationContext]:
    """Presentation contexts for C-STORE sub-operations (after ``first``), within 128."""
    room = MAX_CONTEXTS - len(first)
    classes = [c for c in dict.fromkeys(sop_classes) if c]
    if len(classes) > room:
        raise ConfigError(f"{len(classes)} SOP classes do not fit in one association ({room} at most)")
    pairs = [(c, [ts]) for c in classes for ts in tcs.for_class(c)]
    if len(pairs) > room:
        pairs = [(c, list(tcs.for_class(c))) for c in classes]
    ids = ul.odd_ids(len(first) + len(pairs))
    return [*first, *(ul.PresentationContext(cid, c, ts) for cid, (c, ts) in zip(ids[len(first):], pairs, strict=True))]


# --- C-GET -------------------------------------------------------------------------------------

def _request(link: _Link, node: DicomNode, calling: CallingNode, unit: _Unit, verb: str,
             landing: Landing | None, contexts: dict[int, ul.PresentationContext]) -> None:
    """Send one C-GET/C-MOVE request and read its responses (and C-STOREs) to the final one (once
    cancelled: a C-CANCEL-RQ unless sent already, what arrives still lands, any final status ends it)."""
    where = faults.where_of(node)
    model = GET_MODEL if verb == "C-GET" else MOVE_MODEL
    request_context = next(c for c in contexts.values() if c.abstract_syntax == model)
    if not request_context.accepted:
        raise QueryFailed(f"{where} does not offer Study Root {verb} (its presentation context was refused)"
                          + (": try C-MOVE" if verb == "C-GET" else ": try C-GET"), status=0x0122)
    field = ul.C_GET_RQ if verb == "C-GET" else ul.C_MOVE_RQ
    command = ul.retrieve_request(field, model, 1, calling.aet if verb == "C-MOVE" else "")
    if not link.start(request_context.id, 1, command, unit.identifier()):
        return  # cancelled before the request went out: the series stays pending
    sender = f"{node.aet}@{node.host}"
    while True:
        if link.watch.stopping():
            link.cancel()
        message = link.conn.read_message()
        kind = message.command_field
        if kind == ul.C_STORE_RQ and landing is not None:
            sop = message.text(ul.AFFECTED_SOP_INSTANCE)
            context = contexts.get(message.context_id)
            if context is None or not context.accepted:
                status = 0x0122
            elif not landing.wanted(sop):
                status = landing.land(sop, b"", sender=sender)
            else:
                header = part10_header(message.text(ul.AFFECTED_SOP_CLASS), sop, context.transfer_syntax,
                                       node.aet)
                status = landing.land(sop, message.data, header=header, sender=sender)
            link.send_message(message.context_id, ul.store_response(message, status))
        elif kind in (ul.C_GET_RSP, ul.C_MOVE_RSP):
            code = message.number(ul.STATUS)
            if code in _PENDING:
                continue
            link.finish()
            if link.cancelled:
                LOGGER.info("%s %s of series %s cancelled: final status 0x%04X, %d sub-operations remaining",
                            where, verb, unit.series_uid, code, message.number(ul.REMAINING, 0))
                return
            if code == 0x0000 or 0xB000 <= code <= 0xBFFF or code == 0xFE00:
                failed = message.number(ul.FAILED, 0)
                if failed > 0:
                    LOGGER.info("%s %s of series %s: %d sub-operations failed", where, verb, unit.series_uid,
                                failed)
                return
            comment = message.text(ul.ERROR_COMMENT)
            raise QueryFailed(f"{where} answered the {verb} with status 0x{code:04X} "
                              f"({_status_words(code, verb, calling)})" + (f" [{comment}]" if comment else ""),
                              status=code)
        elif kind == ul.C_ECHO_RQ:
            link.send_message(message.context_id, ul.echo_response(message))


def _run(node: DicomNode, calling: CallingNode, unit: _Unit, verb: str, landing: Landing,
         tcs: TransferSyntaxes, timeout: float, watch: _Cancel) -> None:
    """One series (or part of one) on its own association."""
    if watch.stopping():
        return  # cancelled before it began: it stays pending
    where = faults.where_of(node)
    model = GET_MODEL if verb == "C-GET" else MOVE_MODEL
    first = [ul.PresentationContext(1, model, [IMPLICIT_LE])]
    roles: dict[str, tuple[int, int]] = {}
    if verb == "C-GET":
        contexts = storage_contexts(unit.sop_classes, tcs, first)
        roles = {c.abstract_syntax: (0, 1) for c in contexts[1:]}
    else:
        contexts = first
    try:
        conn = _open(node, calling, contexts, roles, timeout, watch)
    except DicomnbError:
        if watch.stopping():
            return  # cut off while the association was being set up
        raise
    link = watch.link_of(conn)
    before = len(landing.records)
    try:
        try:
            _request(link, node, calling, unit, verb, landing if verb == "C-GET" else None,
                     {c.id: c for c in contexts})
        except (ul.PeerAborted, ul.PeerClosed, ul.PeerSilent, ul.Release) as exc:
            if not watch.stopping():
                raise
            LOGGER.info("%s: the %s of series %s ended after the cancel: %s", where, verb, unit.series_uid,
                        "cut off at the deadline" if link.cut else repr(exc))
            _abort(conn, link)
            return
    except ul.Release:
        link.send(ul.RELEASE_RP_PDU)
        _close(conn, link)
        raise AssociationAborted(f"{where} released the association in the middle of the {verb}") from None
    except ul.PeerAborted as exc:
        _close(conn, link)
        raise AssociationAborted(_cut_short(where, verb, "aborted the association", landing, before)) from exc
    except ul.PeerMalformed as exc:
        _abort(conn, link)
        raise AssociationAborted(_cut_short(where, verb, f"sent something that is not valid DICOM ({exc})",
                                            landing, before)) from exc
    except ul.PeerClosed as exc:
        _close(conn, link)
        raise AssociationAborted(_cut_short(where, verb, f"closed the connection ({exc})", landing,
                                            before)) from exc
    except ul.PeerSilent as exc:
        _abort(conn, link)
        raise QueryFailed(f"{where}: no answer to the {verb} within {timeout:g} s: the archive may be busy: "
                          "retrieve again (what arrived is kept) or raise the timeout", status=None) from exc
    except BaseException:
        _abort(conn, link)
        raise
    _release(conn, link)


def _cut_short(where: str, verb: str, what: str, landing: Landing, before: int) -> str:
    arrived = len(landing.records) - before
    return (f"{where} {what} during the {verb}: {arrived} instance{'' if arrived == 1 else 's'} of this request "
            f"arrived and are kept; retrieve again to fetch the rest")


# --- the entry point ---------------------------------------------------------------------------

def retrieve_dimse(node: DicomNode, landing: Landing, *, method: str = "c-get",
                   sop_classes: Sequence[str] = (), calling: CallingNode | None = None, timeout: float = 30,
                   parallel: int = PARALLEL, tcs: TransferSyntaxes | None = None,
                   cancel: threading.Event | None = None) -> bool:
    """Fetch what ``landing`` waits for from ``node`` by C-GET or C-MOVE, series by series.

    ``sop_classes`` are the study's (from :func:`list_instances`), used for the C-GET
    presentation contexts of series whose instances' SOP classes were not listed.

    Series run ``parallel`` at a time, each on its own association. When one fails, the
    others still finish (what arrived is kept), then the first error is raised.

    Set ``cancel`` (from another thread) to stop (see the module's docstring): it returns within
    about :data:`CANCEL_GRACE` s (at once when set before), with every association, thread and
    listener of the retrieve ended; the landing keeps what arrived.

    Returns
    -------
    bool
        True when it was cancelled with instances still pending.

    Raises
    ------
    ConnectionFailed, AssociationRejected, AssociationAborted, QueryFailed
        See the module's docstring (not for what the cancel cut short).
    ConfigError
        C-MOVE: our Storage SCP cannot listen on the calling node's port.
    """
    calling = calling or CallingNode()
    tcs = tcs or TransferSyntaxes.load()
    verb = {"c-get": "C-GET", "c-move": "C-MOVE"}[method]
    units = _units(landing, sop_classes)
    watch = _Cancel(cancel)
    if not units or watch.stopping():
        return bool(units)
    with contextlib.ExitStack() as stack:
        scp = stack.enter_context(storage_scp(calling, landing, tcs, timeout)) if verb == "C-MOVE" else None
        with ThreadPoolExecutor(max(1, min(parallel, len(units))), thread_name_prefix="dicomnb-retrieve") as pool:
            futures = [pool.submit(_run, node, calling, unit, verb, landing, tcs, timeout, watch) for unit in units]
            watch.follow(futures)
        errors = [e for f in futures if not f.cancelled() and (e := f.exception()) is not None]
        if scp is not None and landing.missing:  # an archive may answer before its last C-STORE ends
            scp.wait_idle(watch.remaining() if watch.took_effect else min(timeout, 5), landing)
        if errors:
            raise errors[0]
    return watch.took_effect and bool(landing.missing)
