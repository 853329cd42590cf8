"""Malformed PDUs from a scripted raw-socket peer, through both network layers.

A real server cannot be made to send a truncated A-ASSOCIATE-AC or a P-DATA-TF whose PDV
runs past its end; :class:`HostilePeer` (a listening socket on loopback, like pynetdicom's
``tests/parrot.py``) reads the association request and answers with such bytes. Each layer
must turn each answer into a typed dicomnb error that says what came, without waiting for
bytes a length field announced, without allocating what it claims (up to 4 GiB), and without
leaving a thread or a socket behind:

- the lean upper layer that retrieval runs on (:func:`dicomnb.sources.retrieve.list_instances`
  for C-FIND, :func:`~dicomnb.sources.retrieve.retrieve_dimse` for C-GET), which refuses a
  PDU from its header;
- pynetdicom (:func:`dicomnb.sources.dimse.echo` and :func:`~dicomnb.sources.dimse.find`),
  which reads a whole PDU before anyone can judge it: a header announcing more than comes is
  bounded by the timeout there, everything else is refused at once.
"""

from __future__ import annotations

import gc
import os
import re
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from conftest import require_module
from netcommon import CT_INSTANCE, CT_SERIES, CT_STUDY, collect_garbage  # noqa: F401 - collect_garbage: autouse fixture
from peers import LoopbackPeer, accept_every_context

import dicomnb
from dicomnb.core.errors import AssociationAborted, ConnectionFailed, DicomnbError, QueryFailed
from dicomnb.core.nodes import CallingNode, DicomNode
from dicomnb.core.retrieval import Expected, Landing
from dicomnb.core.tcs import TransferSyntaxes
from dicomnb.sources import retrieve, storescp
from dicomnb.sources import upperlayer as ul
from dicomnb.sources.dimse import echo, find

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
GIB4 = 0xFFFFFFFF

#: What answering a hostile peer may cost in Python allocations, far below what its length
#: fields claim (a buffered read of a claimed 1 GiB body allocates 1 GiB at once).
MEMORY_BOUND = 16 << 20

#: Seconds allowed per call where the error must come at once (it never does near this).
TIMEOUT = 5.0
#: The timeout where pynetdicom can only wait (a header announcing more than ever comes).
SHORT_TIMEOUT = 0.5
FAST = 1.0  # seconds within which an error that needs no waiting must come

Script = Callable[[socket.socket, bytes], None]


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 16))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def recv_pdu(sock: socket.socket) -> tuple[int, bytes]:
    """Read one PDU (type, body), as a scripted peer does."""
    kind, _, length = struct.unpack(">BBI", recv_exactly(sock, 6))
    return kind, recv_exactly(sock, length)


class HostilePeer(LoopbackPeer):
    """A DICOM "server" that reads the A-ASSOCIATE-RQ and answers with ``script(sock, rq_body)``.

    After the script the connection stays open (so the client has to judge the bytes it got,
    not a closed connection) until the script closes it or the peer is closed. :meth:`close`
    closes everything it opened and re-raises what a broken script raised.
    """

    thread_name = "hostile-peer"

    def __init__(self, script: Script) -> None:
        self.script = script
        self.errors: list[BaseException] = []
        super().__init__()
        self.node = DicomNode("hostile", "HOSTILE", "127.0.0.1", self.port)

    def handle(self, sock: socket.socket) -> None:
        sock.settimeout(5)
        try:
            kind, body = recv_pdu(sock)
            if kind != ul.ASSOCIATE_RQ:
                raise AssertionError(f"PDU type {kind} instead of an A-ASSOCIATE-RQ")
            self.script(sock, body)
        except OSError:
            pass  # the client gave up (closed, aborted) before the script ended: fine
        except BaseException as exc:  # noqa: BLE001 - a broken script: re-raised by close()
            self.errors.append(exc)

    def close(self) -> None:
        super().close()
        if self.errors:
            raise self.errors[0]


# --- what the peer answers ---------------------------------------------------------------------

def header(kind: int, length: int) -> bytes:
    return struct.pack(">BBI", kind, 0, length)


def accept_all(rq_body: bytes) -> bytes:
    """A valid A-ASSOCIATE-AC accepting every proposed context with its first transfer syntax."""
    return accept_every_context(ul.Association.decode(rq_body), 16384)


def send(data: bytes) -> Script:
    """Answer the association request with ``data``, and keep the connection open."""
    def script(sock: socket.socket, rq_body: bytes) -> None:
        sock.sendall(data)
    return script


def send_then_close(data: bytes) -> Script:
    def script(sock: socket.socket, rq_body: bytes) -> None:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_RDWR)
    return script


def ac_items_past_end(sock: socket.socket, rq_body: bytes) -> None:
    """An A-ASSOCIATE-AC cut inside its last presentation context item, whose length says 200."""
    body = accept_all(rq_body)[6:]
    position = last = 68
    while position < len(body):
        kind, _, length = struct.unpack_from(">BBH", body, position)
        last = position if kind == 0x21 else last
        position += 4 + length
    cut = body[:last] + struct.pack(">BBH", 0x21, 0, 200) + body[last + 4:last + 6]
    sock.sendall(header(ul.ASSOCIATE_AC, len(cut)) + cut)


def ac_cut_short(sock: socket.socket, rq_body: bytes) -> None:
    """An A-ASSOCIATE-AC announced whole, sent halfway, then the connection closed."""
    ac = accept_all(rq_body)
    sock.sendall(ac[:len(ac) // 2])
    sock.shutdown(socket.SHUT_RDWR)


def ac_unknown_context(sock: socket.socket, rq_body: bytes) -> None:
    """An A-ASSOCIATE-AC accepting presentation context 201 only, which nobody proposed."""
    request = ul.Association.decode(rq_body)
    first = request.contexts[0]
    stranger = ul.PresentationContext(201, first.abstract_syntax, first.transfer_syntaxes, 0,
                                      first.transfer_syntaxes[0])
    sock.sendall(ul.Association(called=request.called, calling=request.calling,
                                contexts=[stranger]).encode(ul.ASSOCIATE_AC, 16384))


def after_request(answer: Callable[[int], bytes]) -> Script:
    """Accept the association, read the request's command, answer ``answer(context ID)``."""
    def script(sock: socket.socket, rq_body: bytes) -> None:
        sock.sendall(accept_all(rq_body))
        kind, body = recv_pdu(sock)
        while not (kind == ul.P_DATA and body[5] & 0x03 == 0x03):  # to the command's last fragment
            kind, body = recv_pdu(sock)
        sock.sendall(answer(body[4]))
    return script


def pdv_length(length: int) -> Callable[[int], bytes]:
    """A P-DATA-TF holding one 26-byte PDV item whose length field says ``length``."""
    def pdu(context_id: int) -> bytes:
        body = struct.pack(">IBB", length, context_id, 0x03) + bytes(20)
        return header(ul.P_DATA, len(body)) + body
    return pdu


def pdata_claiming(length: int) -> Callable[[int], bytes]:
    """The start of a P-DATA-TF whose header announces ``length`` bytes (never sent)."""
    def pdu(context_id: int) -> bytes:
        return header(ul.P_DATA, length) + struct.pack(">IBB", 1000, context_id, 0x03)
    return pdu


@dataclass(frozen=True)
class Case:
    """A hostile answer and what each layer must make of it."""

    script: Script
    lean: str              # what the lean layer's AssociationAborted says (a regex)
    pynetdicom: str = ""   # what pynetdicom's error says ("": not run through pynetdicom)
    waits: bool = False    # pynetdicom can only wait for the timeout (a header announcing more)
    request: bool = False  # the hostile answer comes after the association, to a request


NOT_DICOM = "with something that is not valid DICOM"
CLOSED = "aborted the association request or closed the connection"

CASES = {
    "unknown-pdu-type": Case(send(header(0x09, 4) + bytes(4)),
                             f"{NOT_DICOM} \\(a PDU of unknown type 0x09\\)", CLOSED),
    "http-answer": Case(send(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
                        f"{NOT_DICOM} \\(a PDU of unknown type 0x48 \\('H': text", CLOSED),
    "ac-length-4gib": Case(send(header(ul.ASSOCIATE_AC, GIB4) + bytes(68)),
                           r"A-ASSOCIATE-AC\) announcing 4294967295 bytes, more than the 65536 accepted",
                           "no answer to the association request within the timeout", waits=True),
    "ac-length-1gib": Case(send(header(ul.ASSOCIATE_AC, 1 << 30) + bytes(68)),
                           r"A-ASSOCIATE-AC\) announcing 1073741824 bytes"),
    "ac-above-64kib": Case(send(header(ul.ASSOCIATE_AC, (1 << 16) + 1) + bytes(68)),
                           r"A-ASSOCIATE-AC\) announcing 65537 bytes, more than the 65536 accepted"),
    "ac-items-past-end": Case(ac_items_past_end, r"an item \(type 0x21\) of 200 bytes that runs past the end",
                              r"an item \(type 0x21\) of 200 bytes that runs past the end"),
    "ac-cut-short": Case(ac_cut_short, CLOSED, CLOSED),
    "ac-unknown-context": Case(ac_unknown_context, "presentation context 201, which we never proposed",
                               "presentation context 201, which we never proposed"),
    "closed-mid-header": Case(send_then_close(header(ul.ASSOCIATE_AC, 100)[:3]), CLOSED, CLOSED),
    "abort": Case(send(ul.ABORT_PDU), CLOSED, CLOSED),
    "pdv-length-0": Case(after_request(pdv_length(0)), "a PDV item of length 0 in a P-DATA-TF",
                         "a PDV item of length 0 in a P-DATA-TF", request=True),
    "pdv-longer-than-pdu": Case(after_request(pdv_length(1000)), "a PDV item of length 1000 in a P-DATA-TF "
                                "with 22 bytes left", "a PDV item of length 1000", request=True),
    "pdata-4gib": Case(after_request(pdata_claiming(GIB4)), r"P-DATA-TF\) announcing 4294967295 bytes",
                       "aborted the association|no answer to the C-", waits=True, request=True),
    # What we announce (4 MiB) plus the 64 KiB of slack, plus one.
    "pdata-above-max-pdu": Case(after_request(pdata_claiming(ul.MAX_PDU + ul.P_DATA_SLACK + 1)),
                                r"P-DATA-TF\) announcing 4259841 bytes, more than the 4259840 accepted",
                                request=True),
}


# --- leak checks, measures -----------------------------------------------------------------------

def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail when a test leaves a thread or a file descriptor (a socket) behind."""
    threads, fds = set(threading.enumerate()), open_fds()
    yield
    deadline = time.monotonic() + 2  # pynetdicom's threads end just after the call returns
    while time.monotonic() < deadline:
        gc.collect()
        if set(threading.enumerate()) <= threads and open_fds() <= fds:
            break
        time.sleep(0.01)
    left = [t.name for t in set(threading.enumerate()) - threads]
    assert not left, f"threads left behind: {left}"
    extra = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in open_fds() - fds
             if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not extra, f"file descriptors left behind: {extra}"


@pytest.fixture(scope="module")
def warm_pynetdicom() -> None:
    """One association first, so that the timings below do not include pynetdicom's imports."""
    require_module("pynetdicom")
    peer = HostilePeer(send(ul.ABORT_PDU))
    try:
        with pytest.raises(AssociationAborted):
            echo(peer.node, timeout=TIMEOUT)
    finally:
        peer.close()


def run(call: Callable[[], object]) -> tuple[DicomnbError, float, int]:
    """Run ``call``, which must raise a dicomnb error: (the error, seconds, peak allocations)."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        call()
    except DicomnbError as exc:
        error = exc
    else:
        raise AssertionError("no error raised")
    finally:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, elapsed, peak


def ct_landing() -> Landing:
    return Landing([Expected(CT_STUDY, CT_SERIES, CT_INSTANCE, CT_IMAGE)], dicomnb.catalog.add_items,
                   source="dimse", origin="hostile")


# --- the lean upper layer ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_lean_layer_c_find(case: str, no_leaks: None) -> None:
    expected = CASES[case]
    peer = HostilePeer(expected.script)
    try:
        error, elapsed, peak = run(lambda: retrieve.list_instances(peer.node, CT_STUDY, timeout=TIMEOUT))
    finally:
        peer.close()
    assert type(error) is AssociationAborted, error
    assert re.search(expected.lean, str(error)), str(error)
    assert error.__cause__ is not None  # raised from what the upper layer found
    if NOT_DICOM in str(error):
        during = "the C-FIND" if expected.request else "the association request"
        assert f"hostile (HOSTILE@127.0.0.1:{peer.node.port}) answered {during} {NOT_DICOM}" in str(error)
        assert str(error).endswith("is this port a DICOM server? If it is, its DICOM implementation is faulty: "
                                   "see its log")
    assert elapsed < FAST, f"{elapsed:.2f} s: it waited instead of judging the bytes it had"
    assert peak < MEMORY_BOUND, f"{peak >> 20} MiB allocated"


@pytest.mark.parametrize("case", [name for name, case in CASES.items() if case.request])
def test_lean_layer_c_get(case: str, no_leaks: None) -> None:
    peer = HostilePeer(CASES[case].script)
    landing = ct_landing()
    try:
        error, elapsed, peak = run(lambda: retrieve.retrieve_dimse(peer.node, landing, sop_classes=[CT_IMAGE],
                                                                   timeout=TIMEOUT))
    finally:
        peer.close()
    assert type(error) is AssociationAborted, error
    assert re.search(f"sent something that is not valid DICOM \\(.*{CASES[case].lean}", str(error)), str(error)
    assert "during the C-GET: 0 instances of this request arrived and are kept" in str(error)
    assert landing.missing == (CT_INSTANCE,)
    assert elapsed < FAST and peak < MEMORY_BOUND


# --- pynetdicom ------------------------------------------------------------------------------------

def pynetdicom_cases(*, request_only: bool = False) -> list[str]:
    return [name for name, case in CASES.items() if case.pynetdicom and (case.request or not request_only)]


@pytest.mark.parametrize("case", pynetdicom_cases())
def test_pynetdicom_c_echo(case: str, warm_pynetdicom: None, no_leaks: None) -> None:
    expected = CASES[case]
    peer = HostilePeer(expected.script)
    timeout = SHORT_TIMEOUT if expected.waits else TIMEOUT
    try:
        error, elapsed, peak = run(lambda: echo(peer.node, timeout=timeout))
    finally:
        peer.close()
    assert isinstance(error, ConnectionFailed | AssociationAborted | QueryFailed), error
    assert re.search(expected.pynetdicom, str(error)), str(error)
    assert elapsed < (timeout + 0.5 if expected.waits else FAST), f"{elapsed:.2f} s"
    assert peak < MEMORY_BOUND


@pytest.mark.parametrize("case", pynetdicom_cases(request_only=True))
def test_pynetdicom_c_find(case: str, warm_pynetdicom: None, no_leaks: None) -> None:
    expected = CASES[case]
    peer = HostilePeer(expected.script)
    timeout = SHORT_TIMEOUT if expected.waits else TIMEOUT
    try:
        error, elapsed, peak = run(lambda: list(find(peer.node, timeout=timeout)))
    finally:
        peer.close()
    assert isinstance(error, AssociationAborted | QueryFailed), error
    assert re.search(expected.pynetdicom, str(error)), str(error)
    assert elapsed < (timeout + 0.5 if expected.waits else FAST), f"{elapsed:.2f} s"
    assert peak < MEMORY_BOUND


# --- our Storage SCP, called by a hostile archive -------------------------------------------------

@pytest.mark.parametrize("pdu", [
    pytest.param(header(0x09, 4) + bytes(4), id="unknown-pdu-type"),
    pytest.param(header(ul.ASSOCIATE_RQ, GIB4) + bytes(68), id="rq-length-4gib"),
    pytest.param(header(ul.ASSOCIATE_RQ, ul.MAX_ASSOCIATE_RQ + 1), id="rq-above-1mib"),
    pytest.param(header(ul.ASSOCIATE_RQ, 72) + bytes(68) + struct.pack(">BBH", 0x20, 0, 100), id="rq-item-past-end"),
])
def test_storage_scp_aborts_a_hostile_caller(pdu: bytes, no_leaks: None) -> None:
    import peers

    calling = CallingNode(port=peers.free_port())
    with storescp.StorageSCP(calling, ct_landing(), TransferSyntaxes(), timeout=TIMEOUT) as scp, \
            socket.create_connection(("127.0.0.1", calling.port), timeout=TIMEOUT) as sock:
        started = time.monotonic()
        sock.sendall(pdu)
        assert recv_pdu(sock) == (ul.ABORT, bytes(4))  # an A-ABORT, then the connection closed
        assert sock.recv(1) == b""
        assert time.monotonic() - started < FAST
        scp.wait_idle(FAST)
        assert scp.active == 0
