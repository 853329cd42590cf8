"""DIMSE services with a remote archive (C-ECHO now; C-FIND, C-MOVE and C-GET build on it).

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
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dicomnb.core.deps import import_optional_dependency
from dicomnb.core.errors import (
    AssociationAborted,
    AssociationRejected,
    ConfigError,
    ConnectionFailed,
    QueryFailed,
)
from dicomnb.core.nodes import CallingNode, DicomNode

__all__ = ["VERIFICATION", "association", "echo", "tls_context"]

LOGGER = logging.getLogger(__name__)

#: Verification SOP Class (C-ECHO).
VERIFICATION = "1.2.840.10008.1.1"

_HINTS = {
    "called ae title not recognised": "check the node's AE title (dicomnb node add NAME --aet ... --replace)",
    "calling ae title not recognised": "ask the archive's administrator to declare our AE title {calling}",
    "temporary congestion": "the archive is busy: try again later",
    "local limit exceeded": "the archive has too many associations open: try again later",
}


def _where(node: DicomNode) -> str:
    return f"{node.name} ({node.aet}@{node.host}:{node.port})"


def tls_context(node: DicomNode) -> ssl.SSLContext | None:
    """The TLS client context for ``node``, or None when it does not use TLS.

    Raises
    ------
    ConfigError
        A TLS file cannot be read or is not a PEM certificate/key.
    """
    if not node.tls_ca:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=node.tls_ca)
        if node.tls_cert:
            context.load_cert_chain(node.tls_cert, node.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"node {node.name!r}: cannot use its TLS files: {exc}: check --tls-ca, "
                          "--tls-cert and --tls-key (PEM files)") from exc
    return context


def _probe(node: DicomNode, timeout: float, context: ssl.SSLContext | None) -> ConnectionFailed:
    """Find out why no connection could be opened to ``node``."""
    where = _where(node)
    try:
        sock = socket.create_connection((node.host, node.port), timeout=timeout)
    except ConnectionRefusedError:
        return ConnectionFailed(f"{where}: connection refused: is the server running? "
                                f"(and is {node.port} its DICOM port?)")
    except socket.gaierror as exc:
        return ConnectionFailed(f"{where}: unknown host {node.host!r} ({exc.strerror}): check the host name")
    except TimeoutError:
        return ConnectionFailed(f"{where}: no answer within the timeout of {timeout:g} s: "
                                "is the host reachable and the port open?")
    except OSError as exc:
        return ConnectionFailed(f"{where}: cannot connect: {exc.strerror or exc}")
    with sock:
        if context is None:
            return ConnectionFailed(f"{where}: the connection failed (it works now: try again)")
        try:
            context.wrap_socket(sock, server_hostname=node.host).close()
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
            return ConnectionFailed(
                f"{where}: TLS refused ({reason}): check that the server speaks TLS on this port "
                "and the node's --tls-ca (and --tls-cert/--tls-key if it checks clients)"
            )
    return ConnectionFailed(f"{where}: the TLS connection failed (it works now: try again)")


@dataclass
class _Seen:
    """What happened on the wire during association negotiation (filled by event handlers)."""

    opened: bool = False
    pdus: list[str] = field(default_factory=list)
    rejection: Any = None  # the A-ASSOCIATE-RJ as a primitive, if one arrived
    sockets: list[socket.socket] = field(default_factory=list)

    def on_open(self, event: Any) -> None:
        self.opened = True
        # pynetdicom 3.0 drops (without closing) its socket when the peer hangs up or an
        # association attempt fails; keep it so it can be closed (pydicom/pynetdicom#979).
        raw = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        if isinstance(raw, socket.socket):
            self.sockets.append(raw)

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


def _rejection(node: DicomNode, calling: CallingNode, primitive: Any) -> AssociationRejected:
    result = str(getattr(primitive, "result_str", "rejected")).lower()
    source = str(getattr(primitive, "source_str", "unknown source")).lower()
    reason = str(getattr(primitive, "reason_str", "no reason given")).lower()
    hint = _HINTS.get(reason, "check the node's AE title, host and port with the archive's administrator")
    return AssociationRejected(
        f"{_where(node)} rejected the association ({result}, by the {source}: {reason}): "
        + hint.format(calling=calling.aet),
        result=result, source=source, reason=reason,
    )


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
    ]
    started = time.monotonic()
    LOGGER.debug("associating with %s", _where(node))
    assoc = ae.associate(node.host, node.port, ae_title=node.aet, evt_handlers=handlers,
                         tls_args=(context, node.host) if context else None)
    try:
        if not assoc.is_established:
            elapsed = time.monotonic() - started
            if assoc.is_rejected or seen.rejection is not None:
                raise _rejection(node, calling, seen.rejection or assoc.acceptor.primitive)
            if not seen.opened:
                raise _probe(node, timeout, context)
            if "A_ASSOCIATE_AC" in seen.pdus:
                raise AssociationRejected(
                    f"{_where(node)} accepted the association but none of the services proposed "
                    f"({', '.join(abstract_syntaxes)}): it does not offer them to us",
                    result="no presentation context accepted", source="service user",
                    reason="no presentation context accepted",
                )
            if context is not None and not seen.pdus and elapsed < timeout * 0.9:
                # TLS 1.3 servers check the client certificate after the handshake: a
                # refusal shows up as the connection closing before any DICOM answer.
                raise ConnectionFailed(
                    f"{_where(node)}: TLS refused: the server closed the connection after the "
                    "TLS handshake: does it require a client certificate (--tls-cert/--tls-key), "
                    "and does it trust ours?"
                )
            if "A_ABORT_RQ" in seen.pdus or elapsed < timeout * 0.9:
                raise AssociationAborted(
                    f"{_where(node)} aborted the association request or closed the connection: "
                    "is it a DICOM port, and does the archive accept us "
                    f"(calling AE title {calling.aet})?"
                )
            raise ConnectionFailed(
                f"{_where(node)}: no answer to the association request within the timeout of "
                f"{timeout:g} s: is this port a DICOM server? (raise the timeout if it is slow)"
            )
        yield assoc
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
                raise AssociationAborted(f"{_where(node)} aborted the association during the C-ECHO")
            raise QueryFailed(f"{_where(node)}: no answer to the C-ECHO within {timeout:g} s")
        code = int(status.Status)
        if code != 0x0000:
            raise QueryFailed(f"{_where(node)} answered the C-ECHO with status 0x{code:04X}", status=code)
    LOGGER.debug("C-ECHO %s: %.3f s", _where(node), elapsed)
    return elapsed
