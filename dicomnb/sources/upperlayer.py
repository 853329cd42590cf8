"""A lean DICOM upper layer (PS3.8) and the DIMSE messages retrieval needs (PS3.7).

Retrieval moves thousands of instances per study, and each one costs pynetdicom about
2.8 ms of CPU (its reactor threads poll queues and decode every PDU into objects): a
1,000-instance C-GET runs at about 300 instances/s where dcmtk's getscu reaches 900. This
module does only what a C-GET, a C-MOVE and a Storage SCP need, with blocking reads on a
buffered socket: a P-DATA PDU is cut into its fragments by slicing, a command set is read
with ``struct``, and a data set is never decoded here (it goes to its file as received).

Association set-up and its failures (rejection, abort, TLS refusal, silence) are turned
into dicomnb's errors by the callers (:mod:`dicomnb.sources.retrieve`); this module raises
:class:`PeerAborted`, :class:`PeerClosed`, :class:`PeerMalformed` and :class:`PeerSilent`
for what happens on the wire.

What a peer sends is checked before it is trusted: a PDU header is judged before its body
is read (its type, and its length against a bound per type: see :func:`pdu_limit`), so a
hostile length field costs neither memory nor a wait for bytes that never come; items and
PDV items must lie within their PDU.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from dicomnb.core.retrieval import IMPLEMENTATION_UID, IMPLEMENTATION_VERSION

__all__ = [
    "IMPLEMENTATION_UID",
    "Association",
    "Connection",
    "Message",
    "PeerAborted",
    "PeerClosed",
    "PeerMalformed",
    "PeerSilent",
    "PresentationContext",
    "check_pdu",
    "decode_command",
    "encode_command",
]

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

#: The maximum PDU length we announce (what a P-DATA-TF sent to us may hold): large, so
#: few PDUs per instance.
MAX_PDU = 1 << 22

# Bounds on what a peer's PDU length field may claim; a PDU beyond them is refused before
# its body is read (a buffered read allocates the length asked for at once: 0xFFFFFFFF
# would cost 4 GiB, and the 1 GiB cap this replaces let a peer cost us 1 GiB per PDU).
# - A P-DATA-TF: the maximum length we announced, plus 64 KiB of slack for peers that count
#   the length differently (headers included, say): still a bounded, modest allocation.
# - An A-ASSOCIATE-AC answers at most 128 presentation contexts with one transfer syntax
#   each, plus user information (role selections for 128 SOP classes included): about
#   20 KiB at most, so 64 KiB is generous. We ask for no user identity response, the one
#   item that could be larger.
# - An A-ASSOCIATE-RQ (our Storage SCP reads them) may propose 128 contexts with many
#   transfer syntaxes each: 1 MiB.
# - A-ASSOCIATE-RJ, A-RELEASE and A-ABORT hold 4 bytes; the 64 KiB bound serves them too.
P_DATA_SLACK = 1 << 16
MAX_ASSOCIATE_AC = 1 << 16
MAX_ASSOCIATE_RQ = 1 << 20

# PDU types (PS3.8 9.3)
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07

# Command fields (PS3.7 E.1)
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_GET_RQ, C_GET_RSP = 0x0010, 0x8010
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_CANCEL_RQ = 0x0FFF
NO_DATA_SET = 0x0101

# Command elements (group 0000), by element number, with how their values are written.
AFFECTED_SOP_CLASS = 0x0002
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
RESPONDED_TO = 0x0120
MOVE_DESTINATION = 0x0600
PRIORITY = 0x0700
DATA_SET_TYPE = 0x0800
STATUS = 0x0900
ERROR_COMMENT = 0x0902
AFFECTED_SOP_INSTANCE = 0x1000
REMAINING, COMPLETED, FAILED, WARNING = 0x1020, 0x1021, 0x1022, 0x1023
MOVE_ORIGINATOR = 0x1030
_US = {COMMAND_FIELD, MESSAGE_ID, RESPONDED_TO, PRIORITY, DATA_SET_TYPE, STATUS,
       REMAINING, COMPLETED, FAILED, WARNING, 0x1031}
_TEXT_PAD = {AFFECTED_SOP_CLASS: b"\x00", AFFECTED_SOP_INSTANCE: b"\x00", MOVE_DESTINATION: b" ",
             MOVE_ORIGINATOR: b" ", ERROR_COMMENT: b" "}

_HEADER = struct.Struct(">BBI")
_ITEM = struct.Struct(">BBH")
_PDV = struct.Struct(">IBB")
_ELEMENT = struct.Struct("<HHI")


class PeerAborted(Exception):
    """The peer sent an A-ABORT."""


class PeerClosed(Exception):
    """The peer closed the connection, or the connection failed (see also :class:`PeerMalformed`)."""


class PeerMalformed(PeerClosed):
    """The peer sent something that is not valid DICOM (unknown PDU type, impossible length).

    A :class:`PeerClosed`: the connection cannot be used any more; callers that can should
    send an A-ABORT before closing it.
    """


class PeerSilent(Exception):
    """Nothing came from the peer within the timeout."""


def encode_command(values: dict[int, int | str]) -> bytes:
    """A command set (implicit VR little endian, group 0000) from element number → value."""
    body = bytearray()
    for element in sorted(values):
        value = values[element]
        if element in _US:
            raw = struct.pack("<H", int(value))
        else:
            raw = str(value).encode("ascii")
            if len(raw) % 2:
                raw += _TEXT_PAD.get(element, b" ")
        body += _ELEMENT.pack(0, element, len(raw)) + raw
    return _ELEMENT.pack(0, 0, 4) + struct.pack("<I", len(body)) + bytes(body)


def decode_command(data: bytes) -> dict[int, bytes]:
    """Element number → raw value of a command set (implicit VR little endian)."""
    values: dict[int, bytes] = {}
    position, end = 0, len(data)
    while position + 8 <= end:
        group, element, length = _ELEMENT.unpack_from(data, position)
        position += 8
        if group == 0:
            values[element] = data[position:position + length]
        position += length
    return values


def command_int(command: dict[int, bytes], element: int, default: int = -1) -> int:
    raw = command.get(element)
    if raw is None or len(raw) < 2:
        return default
    return int.from_bytes(raw[:4] if len(raw) >= 4 and element not in _US else raw[:2], "little")


def command_text(command: dict[int, bytes], element: int) -> str:
    return command.get(element, b"").rstrip(b"\x00 ").decode("ascii", "replace")


def _item(kind: int, content: bytes) -> bytes:
    return _ITEM.pack(kind, 0, len(content)) + content


def _ae(title: str) -> bytes:
    return title.encode("ascii")[:16].ljust(16, b" ")


@dataclass
class PresentationContext:
    """One presentation context: proposed transfer syntaxes, then the one accepted."""

    id: int
    abstract_syntax: str
    transfer_syntaxes: list[str]
    result: int = -1                 # 0 accepted, 1-4 refused (PS3.8 9.3.3.2), -1 not answered
    transfer_syntax: str = ""        # the one accepted

    @property
    def accepted(self) -> bool:
        return self.result == 0


@dataclass
class Association:
    """What an A-ASSOCIATE-RQ or -AC carries that we use."""

    called: str = ""
    calling: str = ""
    contexts: list[PresentationContext] = field(default_factory=list)
    max_pdu: int = 0                               # 0: no limit
    roles: dict[str, tuple[int, int]] = field(default_factory=dict)   # SOP class → (SCU, SCP)
    implementation_uid: str = ""

    def check_answers(self, proposed: Collection[int]) -> None:
        """Raise :class:`PeerMalformed` when this A-ASSOCIATE-AC answers a context not in ``proposed``.

        PS3.8 9.3.3.2: each answered context is one that was proposed. An answer for another
        would leave us unsure which of ours it meant: a faulty peer, not one to talk to.
        """
        strangers = sorted({c.id for c in self.contexts} - set(proposed))
        if strangers:
            raise PeerMalformed(f"an A-ASSOCIATE-AC answering presentation context "
                                f"{', '.join(map(str, strangers))}, which we never proposed")

    def encode(self, kind: int, max_pdu: int) -> bytes:
        """The A-ASSOCIATE-RQ (``kind`` 1) or -AC (2) PDU proposing/answering :attr:`contexts`."""
        items = [_item(0x10, APPLICATION_CONTEXT.encode())]
        for context in self.contexts:
            if kind == ASSOCIATE_RQ:
                subs = _item(0x30, context.abstract_syntax.encode()) + b"".join(
                    _item(0x40, ts.encode()) for ts in context.transfer_syntaxes)
                items.append(_item(0x20, bytes([context.id, 0, 0, 0]) + subs))
            else:
                ts = context.transfer_syntax if context.accepted else (context.transfer_syntaxes or [""])[0]
                items.append(_item(0x21, bytes([context.id, 0, max(context.result, 0), 0])
                                   + _item(0x40, ts.encode())))
        user = [_item(0x51, struct.pack(">I", max_pdu)), _item(0x52, IMPLEMENTATION_UID.encode())]
        for uid, (scu, scp) in self.roles.items():
            raw = uid.encode()
            user.append(_item(0x54, struct.pack(">H", len(raw)) + raw + bytes([scu, scp])))
        user.append(_item(0x55, IMPLEMENTATION_VERSION.encode()))
        items.append(_item(0x50, b"".join(user)))
        body = struct.pack(">HH", 1, 0) + _ae(self.called) + _ae(self.calling) + bytes(32) + b"".join(items)
        return _HEADER.pack(kind, 0, len(body)) + body

    @classmethod
    def decode(cls, body: bytes) -> Association:
        """Read an A-ASSOCIATE-RQ or -AC PDU's body.

        Raises
        ------
        PeerMalformed
            The body is too short, or an item runs past its end.
        """
        if len(body) < 68:
            raise PeerMalformed(f"an A-ASSOCIATE PDU of {len(body)} bytes, too short to read (68 at least)")
        found = cls(called=body[4:20].decode("ascii", "replace").strip(),
                    calling=body[20:36].decode("ascii", "replace").strip())
        for kind, content in _items(body, 68):
            if kind in (0x20, 0x21):
                if len(content) < 4:
                    raise PeerMalformed(f"a presentation context item of {len(content)} bytes (4 at least)")
                context = PresentationContext(content[0], "", [], content[2] if kind == 0x21 else -1)
                for sub, value in _items(content, 4):
                    uid = _uid(value)
                    if sub == 0x30:
                        context.abstract_syntax = uid
                    elif sub == 0x40:
                        context.transfer_syntaxes.append(uid)
                if kind == 0x21 and context.transfer_syntaxes:
                    context.transfer_syntax = context.transfer_syntaxes[0]
                found.contexts.append(context)
            elif kind == 0x50:
                for sub, value in _items(content, 0):
                    if sub == 0x51 and len(value) >= 4:
                        found.max_pdu = struct.unpack(">I", value[:4])[0]
                    elif sub == 0x52:
                        found.implementation_uid = _uid(value)
                    elif sub == 0x54 and len(value) >= 2:
                        size = struct.unpack(">H", value[:2])[0]
                        roles = value[2 + size:4 + size]
                        if len(roles) == 2:
                            found.roles[_uid(value[2:2 + size])] = (roles[0], roles[1])
        return found


def _uid(raw: bytes) -> str:
    return raw.rstrip(b"\x00 ").decode("ascii", "replace")


def _items(data: bytes, start: int) -> Iterable[tuple[int, bytes]]:
    """The (type, content) items of ``data`` from ``start``; each must end within ``data``."""
    position = start
    while position < len(data):
        if position + 4 > len(data):
            raise PeerMalformed(f"{len(data) - position} stray bytes after the last item of an A-ASSOCIATE PDU")
        kind, _, length = _ITEM.unpack_from(data, position)
        if position + 4 + length > len(data):
            raise PeerMalformed(f"an item (type 0x{kind:02X}) of {length} bytes that runs past the end of its "
                                f"A-ASSOCIATE PDU ({len(data) - position - 4} bytes left)")
        yield kind, data[position + 4:position + 4 + length]
        position += 4 + length


def rejection_pdu(result: int, source: int, reason: int) -> bytes:
    return _HEADER.pack(ASSOCIATE_RJ, 0, 4) + bytes([0, result, source, reason])


RELEASE_RQ_PDU = _HEADER.pack(RELEASE_RQ, 0, 4) + bytes(4)
RELEASE_RP_PDU = _HEADER.pack(RELEASE_RP, 0, 4) + bytes(4)
ABORT_PDU = _HEADER.pack(ABORT, 0, 4) + bytes([0, 0, 0, 0])


@dataclass
class Message:
    """A DIMSE message: its presentation context, command set and data set fragments."""

    context_id: int
    command: dict[int, bytes]
    data: list[memoryview] = field(default_factory=list)

    @property
    def command_field(self) -> int:
        return command_int(self.command, COMMAND_FIELD)

    def number(self, element: int, default: int = -1) -> int:
        return command_int(self.command, element, default)

    def text(self, element: int) -> str:
        return command_text(self.command, element)


class Release(Exception):
    """The peer asked to release the association (raised by :meth:`Connection.read_message`)."""


def pdv_items(body: bytes) -> Iterator[tuple[int, int, int, int]]:
    """The PDV items of a P-DATA-TF body: (context ID, control header, start, end) of each fragment.

    Raises
    ------
    PeerMalformed
        An item that runs past the PDU, or one too short to hold its header.
    """
    position = 0
    while position < len(body):
        if position + 6 > len(body):
            raise PeerMalformed(f"{len(body) - position} stray bytes after the last PDV item of a P-DATA-TF")
        length, context_id, control = _PDV.unpack_from(body, position)
        # The length counts the context ID and the control header: 2 at least.
        if length < 2 or position + 4 + length > len(body):
            raise PeerMalformed(f"a PDV item of length {length} in a P-DATA-TF with {len(body) - position - 4} "
                                "bytes left for it")
        yield context_id, control, position + 6, position + 4 + length
        position += 4 + length


def check_pdu(pdu: bytes, proposed: Collection[int]) -> None:
    """Check a whole PDU received as an association requestor (for pynetdicom's, in :mod:`.dimse`).

    ``proposed`` are the presentation context IDs we proposed. Checks what :class:`Connection`
    checks as it reads: a known PDU type, an A-ASSOCIATE-AC that can be read and answers
    only what we proposed, PDV items within their P-DATA-TF.

    Raises
    ------
    PeerMalformed
        What is wrong with it.
    """
    kind = pdu[0] if pdu else 0
    if kind not in _PDU_NAMES:
        raise PeerMalformed(f"a PDU of unknown type 0x{kind:02X}")
    if kind == P_DATA:
        for _ in pdv_items(pdu[6:]):
            pass
    elif kind == ASSOCIATE_AC:
        Association.decode(pdu[6:]).check_answers(proposed)


def pdu_limit(kind: int, max_pdu: int) -> int:
    """The longest PDU body of type ``kind`` we read, having announced ``max_pdu`` (0: none)."""
    if kind == P_DATA:
        return (max_pdu or MAX_PDU) + P_DATA_SLACK
    if kind == ASSOCIATE_RQ:
        return MAX_ASSOCIATE_RQ
    return MAX_ASSOCIATE_AC


_PDU_NAMES = {ASSOCIATE_RQ: "A-ASSOCIATE-RQ", ASSOCIATE_AC: "A-ASSOCIATE-AC", ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
              P_DATA: "P-DATA-TF", RELEASE_RQ: "A-RELEASE-RQ", RELEASE_RP: "A-RELEASE-RP", ABORT: "A-ABORT"}


class Connection:
    """A DICOM connection on a connected socket: PDUs and DIMSE messages.

    Parameters
    ----------
    sock : socket.socket
        Connected (and TLS-wrapped, if TLS is used); Nagle is turned off here.
    timeout : float
        Seconds allowed for each read.
    max_pdu : int
        The maximum PDU length we announce on it (bounds the P-DATA-TF PDUs we read).
    """

    def __init__(self, sock: socket.socket, timeout: float, max_pdu: int = MAX_PDU) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        self.sock = sock
        self.timeout = timeout
        self._file = sock.makefile("rb", buffering=1 << 18)
        self.max_pdu = max_pdu
        self.peer_max_pdu = 0     # what the peer accepts: 0 means no limit
        self.pdus = 0

    # -- PDUs -----------------------------------------------------------------------------
    def _read(self, size: int) -> bytes:
        try:
            data = self._file.read(size)
        except TimeoutError as exc:
            raise PeerSilent(f"nothing received within {self.timeout:g} s") from exc
        except OSError as exc:
            raise PeerClosed(f"the connection failed: {exc.strerror or exc}") from exc
        if data is None or len(data) < size:
            raise PeerClosed("the peer closed the connection")
        return data

    def read_pdu(self) -> tuple[int, bytes]:
        """The next PDU: its type and body. An A-ABORT raises :class:`PeerAborted`.

        Raises
        ------
        PeerMalformed
            An unknown PDU type, or a length beyond :func:`pdu_limit` (refused from the
            header, before reading or allocating the body).
        """
        kind, _, length = _HEADER.unpack(self._read(6))
        if kind not in _PDU_NAMES:
            raise PeerMalformed(f"a PDU of unknown type 0x{kind:02X}" + (
                f" ({chr(kind)!r}: text, as a web server answers)" if 0x20 < kind < 0x7F else ""))
        limit = pdu_limit(kind, self.max_pdu)
        if length > limit:
            raise PeerMalformed(f"a PDU ({_PDU_NAMES[kind]}) announcing {length} bytes, more than the {limit} "
                                "accepted")
        body = self._read(length)
        self.pdus += 1
        if kind == ABORT:
            source, reason = (body[2], body[3]) if len(body) >= 4 else (0, 0)
            raise PeerAborted(f"A-ABORT (source {source}, reason {reason})")
        return kind, body

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except TimeoutError as exc:
            raise PeerSilent(f"the peer took nothing within {self.timeout:g} s") from exc
        except OSError as exc:
            raise PeerClosed(f"the connection failed: {exc.strerror or exc}") from exc

    # -- DIMSE messages -------------------------------------------------------------------
    def read_message(self) -> Message:
        """The next DIMSE message; raises :class:`Release` when the peer asks to release.

        Raises
        ------
        PeerMalformed
            A PDV item that does not fit its P-DATA-TF, a PDU of another type in the middle
            of the message, a data set before its command (and what :meth:`read_pdu` raises).
        """
        command = bytearray()
        data: list[memoryview] = []
        context_id = 0
        command_done = expects_data = False
        while True:
            kind, body = self.read_pdu()
            if kind == RELEASE_RQ:
                raise Release()
            if kind != P_DATA:
                raise PeerMalformed(f"an {_PDU_NAMES[kind]} PDU in the middle of a DIMSE message")
            view = memoryview(body)
            for context_id, control, start, end in pdv_items(body):
                fragment = view[start:end]
                if control & 0x01:
                    command += fragment
                    if control & 0x02:
                        command_done = True
                        parsed = decode_command(bytes(command))
                        expects_data = command_int(parsed, DATA_SET_TYPE, NO_DATA_SET) != NO_DATA_SET
                        if not expects_data:
                            return Message(context_id, parsed)
                else:
                    data.append(fragment)
                    if control & 0x02:
                        if not command_done:
                            raise PeerMalformed("a data set before its command")
                        return Message(context_id, decode_command(bytes(command)), data)

    def send_message(self, context_id: int, command: bytes, data_set: bytes | None = None) -> None:
        """Send a command (and its data set), split to fit the peer's maximum PDU length."""
        chunk = (self.peer_max_pdu - 6) if self.peer_max_pdu > 6 else 1 << 20
        parts = [(command, 0x01)] + ([(data_set, 0x00)] if data_set is not None else [])
        out = bytearray()
        for payload, flags in parts:
            view = memoryview(payload)
            for start in range(0, max(len(payload), 1), chunk):
                fragment = view[start:start + chunk]
                last = 0x02 if start + chunk >= len(payload) else 0
                out += _HEADER.pack(P_DATA, 0, len(fragment) + 6) + _PDV.pack(
                    len(fragment) + 2, context_id, flags | last) + fragment
        self.send(bytes(out))

    def close(self) -> None:
        for closing in (self._file.close, lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):
            try:
                closing()
            except OSError:
                pass


def store_response(message: Message, status: int) -> bytes:
    """The C-STORE-RSP command answering ``message`` with ``status``."""
    return encode_command({
        AFFECTED_SOP_CLASS: message.text(AFFECTED_SOP_CLASS), COMMAND_FIELD: C_STORE_RSP,
        RESPONDED_TO: message.number(MESSAGE_ID, 0), DATA_SET_TYPE: NO_DATA_SET, STATUS: status,
        AFFECTED_SOP_INSTANCE: message.text(AFFECTED_SOP_INSTANCE),
    })


def echo_response(message: Message) -> bytes:
    return encode_command({AFFECTED_SOP_CLASS: message.text(AFFECTED_SOP_CLASS), COMMAND_FIELD: C_ECHO_RSP,
                           RESPONDED_TO: message.number(MESSAGE_ID, 0), DATA_SET_TYPE: NO_DATA_SET, STATUS: 0})


def retrieve_request(field_: int, sop_class: str, message_id: int, move_destination: str = "") -> bytes:
    """A C-FIND-RQ, C-GET-RQ or C-MOVE-RQ command (a data set, the identifier, follows)."""
    values: dict[int, int | str] = {AFFECTED_SOP_CLASS: sop_class, COMMAND_FIELD: field_,
                                    MESSAGE_ID: message_id, PRIORITY: 0, DATA_SET_TYPE: 0x0000}
    if move_destination:
        values[MOVE_DESTINATION] = move_destination
    return encode_command(values)


def cancel_request(message_id: int) -> bytes:
    return encode_command({COMMAND_FIELD: C_CANCEL_RQ, RESPONDED_TO: message_id, DATA_SET_TYPE: NO_DATA_SET})


def odd_ids(count: int) -> Sequence[int]:
    """Presentation context IDs: odd numbers 1-255 (at most 128 contexts)."""
    return range(1, 2 * count, 2)
