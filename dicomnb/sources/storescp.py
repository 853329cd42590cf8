"""Our Storage SCP: where a C-MOVE's instances arrive (PS3.4 B, PS3.7 9.1.1).

The archive opens associations to us (the calling node's AE title, host and port) and sends
each instance as a C-STORE; :class:`StorageSCP` lands it in the retrieve's
:class:`~dicomnb.core.retrieval.Landing`, which refuses what it did not ask for. Download
jobs running side by side (one C-MOVE per series) share one listener
(:func:`storage_scp`), each instance going to the landing that waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence

from dicomnb.core.errors import ConfigError, DicomnbError
from dicomnb.core.nodes import CallingNode
from dicomnb.core.retrieval import REFUSED_NOT_AUTHORISED, Landing, part10_header
from dicomnb.core.tcs import IMPLICIT_LE, TransferSyntaxes
from dicomnb.sources import upperlayer as ul

__all__ = ["StorageSCP", "storage_scp"]

LOGGER = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"
MAX_PDU = ul.MAX_PDU


def _abort(conn: ul.Connection) -> None:
    with contextlib.suppress(ul.PeerClosed, ul.PeerSilent):
        conn.send(ul.ABORT_PDU)
    conn.close()


class _Landings:
    """The landings our Storage SCP serves at once (C-MOVEs of several series share one port).

    Each C-STORE goes to the landing that waits for its SOP Instance UID; an instance no
    landing asked for is refused, and said in every landing's errors.
    """

    def __init__(self) -> None:
        self._by_sop: dict[str, Landing] = {}
        self._landings: list[Landing] = []
        self._lock = threading.Lock()

    def add(self, landing: Landing) -> None:
        with self._lock:
            self._landings.append(landing)
            for sop in landing.expected:
                self._by_sop[sop] = landing

    def remove(self, landing: Landing) -> int:
        """Stop serving ``landing``; return how many landings are left."""
        with self._lock:
            self._landings = [other for other in self._landings if other is not landing]
            for sop in landing.expected:
                if self._by_sop.get(sop) is landing:
                    del self._by_sop[sop]
            return len(self._landings)

    def _landing(self, sop: str) -> Landing | None:
        with self._lock:
            return self._by_sop.get(sop)

    def wanted(self, sop: str) -> bool:
        landing = self._landing(sop)
        return landing is not None and landing.wanted(sop)

    def land(self, sop: str, data: bytes | Sequence[bytes | memoryview], *, header: bytes = b"",
             sender: str = "") -> int:
        landing = self._landing(sop)
        if landing is not None:
            return landing.land(sop, data, header=header, sender=sender)
        with self._lock:
            landings = list(self._landings)
        for other in landings:
            other.note(f"{sender or 'the archive'} sent instance {sop!r}, which was not asked for: refused")
        return REFUSED_NOT_AUTHORISED


class StorageSCP:
    """Our Storage SCP for the duration of C-MOVE retrieves (a context manager).

    It listens on ``calling.host:calling.port``, accepts associations called with
    ``calling.aet`` (rejecting others: "called AE title not recognised"), and hands every
    C-STORE to the landing waiting for it (:meth:`serve`; ``landing`` is served from the
    start), refusing what none waits for. The C-MOVEs of several series (download jobs
    running side by side) share it: :func:`storage_scp` gives the one listening on a port.

    Raises
    ------
    ConfigError
        The port cannot be listened on (in use, or not allowed).
    """

    def __init__(self, calling: CallingNode, landing: Landing | None, tcs: TransferSyntaxes, timeout: float) -> None:
        self.calling, self.tcs, self.timeout = calling, tcs, timeout
        self.landing = _Landings()
        if landing is not None:
            self.landing.add(landing)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections: set[ul.Connection] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified as each association ends
        listener = socket.socket(socket.AF_INET6 if ":" in calling.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((calling.host, calling.port))
            listener.listen(16)
        except OSError as exc:
            listener.close()
            raise ConfigError(
                f"our Storage SCP (the C-MOVE destination {calling.aet}) cannot listen on "
                f"{calling.host}:{calling.port}: {exc.strerror or exc}: free that port or give the calling "
                "node another one (the archive must know it), or use C-GET") from exc
        listener.settimeout(0.1)
        self._listener = listener
        self.address = listener.getsockname()[:2]
        self._accepting = threading.Thread(target=self._accept, name="dicomnb-storage-scp", daemon=True)
        self._accepting.start()

    def __enter__(self) -> StorageSCP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._connections)

    def wait_idle(self, seconds: float, landing: Landing | None = None) -> None:
        """Wait (at most ``seconds``) until no association with us is open, or ``landing`` has all it waits for."""
        deadline = time.monotonic() + seconds
        with self._idle:  # the end of a C-MOVE waits here for the archive to release
            while self._connections and (landing is None or landing.missing):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                # an instance landing does not notify: looked at every 5 ms while associations stay open
                self._idle.wait(min(left, 0.005) if landing is not None else left)

    def serve(self, landing: Landing) -> None:
        """Hand the instances ``landing`` waits for to it too."""
        self.landing.add(landing)

    def leave(self, landing: Landing) -> bool:
        """Stop serving ``landing``; True when no landing is left."""
        return self.landing.remove(landing) == 0

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):  # wakes accept() now rather than at its next timeout
            self._listener.shutdown(socket.SHUT_RDWR)
        self._accepting.join(5)
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _abort(conn)
        for thread in list(self._threads):
            thread.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), name="dicomnb-storage-assoc", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        conn = ul.Connection(sock, self.timeout, max_pdu=MAX_PDU)
        with self._lock:
            self._connections.add(conn)
        try:
            self._associate_and_store(conn)
        except ul.PeerMalformed as exc:
            LOGGER.warning("storage association aborted: the peer sent something that is not valid DICOM: %s", exc)
            _abort(conn)
        except (ul.PeerAborted, ul.PeerClosed, ul.PeerSilent, ul.Release) as exc:
            LOGGER.debug("storage association ended: %s", exc)
        except DicomnbError as exc:  # pragma: no cover - a landing error is a status, not an exception
            LOGGER.warning("storage association failed: %s", exc)
            _abort(conn)
        finally:
            conn.close()
            with self._idle:
                self._connections.discard(conn)
                self._idle.notify_all()

    def _associate_and_store(self, conn: ul.Connection) -> None:
        kind, body = conn.read_pdu()
        if kind != ul.ASSOCIATE_RQ:
            _abort(conn)
            return
        request = ul.Association.decode(body)
        if request.called != self.calling.aet:
            conn.send(ul.rejection_pdu(1, 1, 7))  # called AE title not recognised
            return
        for context in request.contexts:
            if context.abstract_syntax == VERIFICATION:
                ours: Sequence[str] = (IMPLICIT_LE,)
            else:
                ours = self.tcs.for_class(context.abstract_syntax)
            chosen = next((ts for ts in context.transfer_syntaxes if ts in ours), "")
            context.result, context.transfer_syntax = (0, chosen) if chosen else (4, "")
        conn.peer_max_pdu = request.max_pdu
        answer = ul.Association(called=request.called, calling=request.calling, contexts=request.contexts)
        conn.send(answer.encode(ul.ASSOCIATE_AC, MAX_PDU))
        contexts = {c.id: c for c in request.contexts}
        sender = request.calling or "an unnamed AE"
        while True:
            try:
                message = conn.read_message()
            except ul.Release:
                conn.send(ul.RELEASE_RP_PDU)
                return
            if message.command_field == ul.C_STORE_RQ:
                sop = message.text(ul.AFFECTED_SOP_INSTANCE)
                accepted = contexts.get(message.context_id)
                if accepted is None or not accepted.accepted:
                    status = 0x0122
                elif not self.landing.wanted(sop):
                    status = self.landing.land(sop, b"", sender=sender)
                else:
                    header = part10_header(message.text(ul.AFFECTED_SOP_CLASS), sop, accepted.transfer_syntax,
                                           request.calling)
                    status = self.landing.land(sop, message.data, header=header, sender=sender)
                conn.send_message(message.context_id, ul.store_response(message, status))
            elif message.command_field == ul.C_ECHO_RQ:
                conn.send_message(message.context_id, ul.echo_response(message))


_SCPS: dict[tuple[str, int, str], StorageSCP] = {}
_SCPS_LOCK = threading.Lock()


@contextlib.contextmanager
def storage_scp(calling: CallingNode, landing: Landing, tcs: TransferSyntaxes, timeout: float) -> Iterator[StorageSCP]:
    """Our Storage SCP on ``calling``'s port, serving ``landing`` while the block runs.

    C-MOVEs running side by side (one per series) share one listener: the first opens it,
    the last to leave closes it.
    """
    key = (calling.host, calling.port, calling.aet)
    with _SCPS_LOCK:
        scp = _SCPS.get(key)
        if scp is None:
            scp = _SCPS[key] = StorageSCP(calling, landing, tcs, timeout)
        else:
            scp.serve(landing)
    try:
        yield scp
    finally:
        with _SCPS_LOCK:
            if scp.leave(landing):
                del _SCPS[key]
                scp.close()
