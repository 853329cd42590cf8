"""What goes wrong on a DIMSE connection, in words that say what to do.

Shared by both DIMSE layers (pynetdicom in :mod:`dicomnb.sources.dimse`, the lean upper layer
in :mod:`dicomnb.sources.retrieve`), so a refused port, a TLS refusal, a rejection, an abort or
a failure status reads the same whichever one met it.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from dicomnb.core.errors import (
    AssociationAborted,
    AssociationRejected,
    ConfigError,
    ConnectionFailed,
    QueryFailed,
)
from dicomnb.core.nodes import CallingNode, DicomNode

__all__ = ["dropped", "failure", "malformed", "probe", "rejection", "tls_context", "where_of"]

_HINTS = {
    "called ae title not recognised": "check the node's AE title (dicomnb node add NAME --aet ... --replace)",
    "calling ae title not recognised": "ask the archive's administrator to declare our AE title {calling}",
    "temporary congestion": "the archive is busy: try again later",
    "local limit exceeded": "the archive has too many associations open: try again later",
}


def where_of(node: DicomNode) -> str:
    """How messages name a node: ``pacs (ORTHANC@127.0.0.1:4242)``."""
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


def probe(node: DicomNode, timeout: float, context: ssl.SSLContext | None) -> ConnectionFailed:
    """Find out why no connection could be opened to ``node``."""
    where = where_of(node)
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
                "and the node's --tls-ca (and --tls-cert/--tls-key if it checks client certificates)"
            )
    return ConnectionFailed(f"{where}: the TLS connection failed (it works now: try again)")


def malformed(where: str, during: str, what: object) -> str:
    """The message for a peer that answered ``during`` with ``what``, which is not valid DICOM."""
    return (f"{where} answered {during} with something that is not valid DICOM ({what}): the association "
            "was aborted: is this port a DICOM server? If it is, its DICOM implementation is faulty: see its log")


def dropped(node: DicomNode, calling: CallingNode, closed: bool) -> AssociationAborted:
    """A peer that aborted the association request, or ``closed`` the connection, instead of answering."""
    # A TLS server closes a plain connection whose first bytes are not a TLS handshake.
    tls = ", without TLS (if it wants TLS, give the node --tls-ca)" if closed and not node.tls_ca else ""
    return AssociationAborted(f"{where_of(node)} aborted the association request or closed the connection: is it "
                              f"a DICOM port{tls}, and does the archive accept us (calling AE title {calling.aet})?")


def rejection(node: DicomNode, calling: CallingNode, primitive: Any) -> AssociationRejected:
    result = str(getattr(primitive, "result_str", "rejected")).lower()
    source = str(getattr(primitive, "source_str", "unknown source")).lower()
    reason = str(getattr(primitive, "reason_str", "no reason given")).lower()
    hint = _HINTS.get(reason, "check the node's AE title, host and port with the archive's administrator")
    return AssociationRejected(
        f"{where_of(node)} rejected the association ({result}, by the {source}: {reason}): "
        + hint.format(calling=calling.aet),
        result=result, source=source, reason=reason,
    )


def status_words(code: int) -> tuple[str, str]:
    """(what the status means, what to do) for a C-FIND failure status."""
    if code == 0xA700:
        return ("out of resources",
                "the archive cannot answer this search now: narrow it (a date range, fewer "
                "wildcards) or try again later")
    if code == 0xA900:
        return ("identifier does not match SOP class",
                "the archive refuses the keys sent: a SERIES query needs the study's "
                "StudyInstanceUID, an IMAGE query the study's and the series'")
    if 0xC000 <= code <= 0xCFFF:
        return ("unable to process",
                "the archive could not process the search; strict archives refuse a PATIENT "
                "level on Study Root and want the StudyInstanceUID at SERIES level and the "
                "SeriesInstanceUID at IMAGE level")
    if code == 0x0122:
        return ("SOP class not supported", "the archive does not offer Study Root C-FIND")
    if code == 0x0124:
        return ("not authorised", "ask the archive's administrator to let our AE title query it")
    return ("failure", "see the archive's log")


def failure(where: str, code: int, status: Any) -> QueryFailed:
    words, hint = status_words(code)
    comment = str(status.get("ErrorComment", "") or "").strip()
    offending = status.get("OffendingElement")
    details = f": {comment}" if comment else ""
    if offending:
        tags = offending if isinstance(offending, (list, tuple)) else [offending]
        details += f" (offending element {', '.join(str(t) for t in tags)})"
    return QueryFailed(f"{where} answered the C-FIND with status 0x{code:04X} ({words}){details}: {hint}",
                       status=code)
