"""Retrieve over WADO-URI (PS3.18 chapter 9): one HTTP GET per instance.

After the C-FIND at IMAGE level has listed the instances, each one is asked for at the
node's ``wado_url``::

    GET /wado?requestType=WADO&studyUID=...&seriesUID=...&objectUID=...&contentType=application/dicom

with the ``/`` of the content type written literally: Orthanc 1.10 does not percent-decode
query strings and answers ``application%2Fdicom`` with HTTP 400. UIDs need no escaping
(digits and dots). The standard library's ``http.client`` keeps one connection alive per
worker thread (``parallel`` of them); nothing else is needed.

A 404 leaves the instance missing (the caller reports it); other failures become
:class:`~dicomnb.core.errors.ConnectionFailed` (refused, unreachable, TLS, silence) or
:class:`~dicomnb.core.errors.QueryFailed` with the HTTP status in ``status``.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from dicomnb.core.errors import ConfigError, ConnectionFailed, QueryFailed
from dicomnb.core.nodes import DicomNode
from dicomnb.core.retrieval import Expected, Landing

__all__ = ["retrieve_wado_uri", "wado_uri"]

LOGGER = logging.getLogger(__name__)

_HINTS = {
    400: "the server refuses the request: is this a WADO-URI URL (Orthanc: http://host:8042/wado)?",
    401: "the server wants credentials, which dicomnb does not send to WADO-URI",
    403: "the server refuses us: ask its administrator",
    405: "the server does not take GET here: is this a WADO-URI URL?",
}


def wado_uri(base: str, instance: Expected) -> str:
    """The WADO-URI request URL of one instance (``contentType=application/dicom``, literally)."""
    separator = "&" if "?" in base else "?"
    return (f"{base}{separator}requestType=WADO&studyUID={instance.study_uid}&seriesUID="
            f"{instance.series_uid}&objectUID={instance.sop_instance_uid}&contentType=application/dicom")


class _Clients:
    """One kept-alive HTTP connection per worker thread, all closed by :meth:`close`."""

    def __init__(self, scheme: str, host: str, port: int | None, timeout: float) -> None:
        self.scheme, self.host, self.port, self.timeout = scheme, host, port, timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self.scheme == "https":
                connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                         context=ssl.create_default_context())
            else:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        return connection

    def get(self, target: str) -> tuple[int, bytes]:
        connection = self._connection()
        for attempt in (1, 2):
            try:
                connection.request("GET", target, headers={"Accept": "application/dicom"})
                if connection.sock is not None and attempt == 1:
                    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                response = connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                connection.close()  # a kept-alive connection the server closed: once more
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            for connection in self._all:
                connection.close()


def retrieve_wado_uri(node: DicomNode, landing: Landing, *, timeout: float = 30, parallel: int = 4) -> None:
    """Fetch what ``landing`` waits for from ``node.wado_url``, ``parallel`` requests at a time.

    Raises
    ------
    ConfigError
        The node has no WADO-URI URL.
    ConnectionFailed
        The server cannot be reached, refuses TLS, or is silent for ``timeout``.
    QueryFailed
        The server answers with an HTTP error other than 404 (``status`` holds it).
    """
    if not node.wado_url:
        raise ConfigError(f"node {node.name!r} has no WADO-URI URL (--wado-url http://host:8042/wado)")
    parts = urlsplit(node.wado_url)
    base_target = parts.path or "/"
    if parts.query:
        base_target += "?" + parts.query
    pending = [e for series in landing.pending_by_series().values() for e in series]
    if not pending:
        return
    client = _Clients(parts.scheme, parts.hostname or "", parts.port, timeout)
    where = f"{node.name} ({node.wado_url})"
    failed = threading.Event()

    def fetch(instance: Expected) -> None:
        if failed.is_set():
            return
        try:
            get(instance)
        except BaseException:
            failed.set()
            raise

    def get(instance: Expected) -> None:
        target = wado_uri(base_target, instance)
        try:
            status, body = client.get(target)
        except ssl.SSLError as exc:
            raise ConnectionFailed(f"{where}: TLS refused ({exc.reason or exc}): check the URL's scheme "
                                   "and the server's certificate") from exc
        except TimeoutError as exc:
            raise ConnectionFailed(f"{where}: no answer within {timeout:g} s: raise the timeout") from exc
        except ConnectionRefusedError as exc:
            raise ConnectionFailed(f"{where}: connection refused: is the web server running, and is "
                                   f"{parts.port or 80} its port?") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionFailed(f"{where}: the request failed: {exc}") from exc
        if status == 404:
            LOGGER.info("%s: instance %s not found (HTTP 404)", where, instance.sop_instance_uid)
            landing.note(f"{where}: instance {instance.sop_instance_uid} not found (HTTP 404)")
            return
        if status != 200:
            hint = _HINTS.get(status, "see the server's log")
            raise QueryFailed(f"{where} answered HTTP {status} for instance {instance.sop_instance_uid}: {hint}",
                              status=status)
        landing.land(instance.sop_instance_uid, body, sender=where)

    try:
        with ThreadPoolExecutor(max(1, min(parallel, len(pending))), thread_name_prefix="dicomnb-wado") as pool:
            futures = [pool.submit(fetch, instance) for instance in pending]
            errors = [error for error in (future.exception() for future in futures) if error is not None]
    finally:
        client.close()
    if errors:
        raise errors[0]
