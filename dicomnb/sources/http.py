"""HTTP plumbing shared by the web sources (WADO-URI, QIDO-RS, WADO-RS).

One :class:`HttpClient` per server and call: it keeps one connection alive per worker
thread (the standard library's ``http.client``; Nagle is off there already), sends the
node's extra headers and the ``Authorization`` header with every request, and turns what
goes wrong into dicomnb's errors with a message that says what to do:

- refused, unknown host, TLS refused, silence for ``timeout`` seconds, a connection broken
  mid-answer → :class:`~dicomnb.core.errors.ConnectionFailed` (:func:`network_error`);
- an HTTP error status → :class:`~dicomnb.core.errors.QueryFailed` with ``status``, or
  :class:`~dicomnb.core.errors.AuthenticationFailed` for 401 and 403 (:func:`status_error`).

A timeout is always in force: it bounds connecting and every read. The ``Authorization``
value is kept in a private attribute, never logged, never part of a message or a repr;
requests are logged at DEBUG level by method and target only.

Servers close idle kept-alive connections (Orthanc after one second): a request that fails
on a connection that has served before, before any answer came, is sent once more on a
fresh one. Only GET requests are made, so that is safe.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import quote, urlsplit

from dicomnb.core.errors import AuthenticationFailed, ConfigError, ConnectionFailed, QueryFailed

__all__ = ["HINTS", "HttpClient", "Response", "aborted_on", "check_timeout", "network_error", "quote_segment",
           "status_error"]

LOGGER = logging.getLogger(__name__)

#: What to do about an HTTP error status, when the caller has nothing more precise to say.
HINTS: dict[int, str] = {
    400: "the server refuses the request: check the node's URL",
    401: "the server refused our credentials: check the credentials (user name, password or token)",
    403: "the server refuses us access with these credentials: check the credentials, or ask its "
         "administrator for access",
    404: "not found: check the node's URL",
    405: "the server does not take GET here: check the node's URL",
    406: "the server cannot send what was asked for (the Accept header)",
    500: "the server failed: see its log, or try again later",
    502: "a gateway in front of the server failed: try again later",
    503: "the server is busy or down: try again later",
    504: "a gateway in front of the server got no answer in time: try again later",
}

# Errors of a kept-alive connection the server closed while it was idle.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


def check_timeout(timeout: object) -> float:
    """``timeout`` as seconds (> 0): a request without one could wait forever.

    Raises
    ------
    ConfigError
        Not a positive number.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigError(f"the timeout must be a number of seconds above 0, not {timeout!r}")
    return float(timeout)


def quote_segment(value: str) -> str:
    """One path segment (a UID), percent-encoded where it must be (a UID never needs it)."""
    return quote(value.strip(), safe=".-_")


def network_error(where: str, exc: BaseException, timeout: float, port: int | None) -> ConnectionFailed:
    """The :class:`ConnectionFailed` that says what to do about a failed connection or read."""
    if isinstance(exc, ssl.SSLError):
        return ConnectionFailed(f"{where}: TLS refused ({exc.reason or exc}): check the URL's scheme "
                                "(https only if the server speaks TLS) and the server's certificate")
    if isinstance(exc, TimeoutError):
        return ConnectionFailed(f"{where}: no answer within {timeout:g} s: is it a web server, and is "
                                "it busy? Raise the timeout if it is slow")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionFailed(f"{where}: connection refused: is the web server running, and is "
                                f"{port or 80} its port?")
    if isinstance(exc, socket.gaierror):
        return ConnectionFailed(f"{where}: unknown host ({exc.strerror}): check the host name in the URL")
    if isinstance(exc, (*_STALE, http.client.IncompleteRead)):
        return ConnectionFailed(f"{where}: the server closed the connection in the middle of its answer: "
                                "try again, and see the server's log")
    if isinstance(exc, http.client.HTTPException):
        return ConnectionFailed(f"{where}: the answer is not HTTP ({type(exc).__name__}): is this the "
                                "server's web port?")
    return ConnectionFailed(f"{where}: the request failed: {getattr(exc, 'strerror', None) or exc}")


def status_error(where: str, status: int, what: str, hints: Mapping[int, str] | None = None) -> QueryFailed:
    """The error for an HTTP error ``status`` answered to ``what`` (401/403: authentication)."""
    hint = (hints or {}).get(status) or HINTS.get(status) or (
        HINTS[500] if status >= 500 else "see the server's log")
    kind = AuthenticationFailed if status in (401, 403) else QueryFailed
    return kind(f"{where} answered HTTP {status} to {what}: {hint}", status=status)


@dataclass
class Response:
    """An answer being read: status, headers, and the body as a stream (``read1``, ``readinto``)."""

    status: int
    raw: http.client.HTTPResponse

    def header(self, name: str, default: str = "") -> str:
        return self.raw.getheader(name, default) or default


class HttpClient:
    """Kept-alive connections to one web server, one per thread.

    Parameters
    ----------
    url : str
        The base URL (its path is the prefix of every target, see :attr:`prefix`).
    where : str
        How messages name the server ("pacs (http://host:8042/dicom-web)").
    timeout : float
        Seconds allowed to connect and for every read.
    headers : pairs of str
        Sent with every request (the node's extra headers).
    authorization : str, optional
        The ``Authorization`` header's value; kept private.
    """

    def __init__(self, url: str, *, where: str, timeout: float,
                 headers: Sequence[tuple[str, str]] = (), authorization: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{where}: {url!r} is not an http(s) URL")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.query = parts.query
        self.where = where
        self.timeout = check_timeout(timeout)
        self._headers = dict(headers)
        if authorization is not None:
            try:
                authorization.encode("latin-1")
            except UnicodeEncodeError:
                # Said here, without the value: http.client's own error would quote it.
                raise ConfigError(f"{where}: the password or token holds characters an HTTP header "
                                  "cannot carry") from None
            self._headers["Authorization"] = authorization
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<HttpClient {self.scheme}://{self.host}{':' + str(self.port) if self.port else ''}{self.prefix}>"

    # -- connections ----------------------------------------------------------------------------
    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None and fresh:
            connection.close()
            connection = None
        if connection is None:
            if self.scheme == "https":
                connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                         context=ssl.create_default_context())
            else:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
            self._local.used = False
            with self._lock:
                self._all.append(connection)
        return connection

    def abort(self) -> None:
        """Break every connection now (from any thread): a read blocked on one returns at once."""
        with self._lock:
            connections = list(self._all)
        for connection in connections:
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            connections, self._all = self._all, []
        for connection in connections:
            connection.close()

    # -- requests -------------------------------------------------------------------------------
    def target(self, path: str, params: Sequence[tuple[str, str]] = ()) -> str:
        """``prefix + path`` with the query ``params`` (values written as given: already encoded)."""
        query = "&".join(f"{name}={value}" for name, value in params)
        if self.query:
            query = self.query + ("&" + query if query else "")
        return f"{self.prefix}{path}" + (f"?{query}" if query else "")

    @contextlib.contextmanager
    def get(self, target: str, accept: str) -> Iterator[Response]:
        """Send ``GET target``; yield the answer, whatever its status, to be read.

        A body read to its end leaves the connection open for the next request; one left
        unread (an error, a cancel) closes it.

        Raises
        ------
        ConnectionFailed
            No connection, TLS refused, no answer within the timeout, not HTTP.
        """
        headers = {"Accept": accept, **self._headers}
        started = time.monotonic()
        raw = self._send(target, headers)
        LOGGER.debug("%s: GET %s -> HTTP %d in %.3f s", self.where, target, raw.status,
                     time.monotonic() - started)
        connection = self._local.connection
        try:
            yield Response(raw.status, raw)
        finally:
            if not raw.isclosed():
                connection.close()  # the rest of the body would have to be read first

    def read(self, response: Response) -> bytes:
        """The whole body of a (small) answer; network failures typed."""
        try:
            return response.raw.read()
        except (OSError, http.client.HTTPException) as exc:
            raise network_error(self.where, exc, self.timeout, self.port) from exc

    def failure(self, exc: BaseException) -> ConnectionFailed:
        """The typed error for a network failure while reading an answer."""
        return network_error(self.where, exc, self.timeout, self.port)

    def _send(self, target: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        connection = self._connection()
        for attempt in (1, 2):
            reused = bool(getattr(self._local, "used", False))
            try:
                connection.request("GET", target, headers=headers)
                raw = connection.getresponse()
                self._local.used = True
                return raw
            except _STALE as exc:
                if attempt == 2 or not reused:
                    self._fail(connection, exc)
                connection = self._connection(fresh=True)  # closed while idle: once more
            except (OSError, http.client.HTTPException) as exc:
                self._fail(connection, exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fail(self, connection: http.client.HTTPConnection, exc: BaseException) -> NoReturn:
        connection.close()
        raise network_error(self.where, exc, self.timeout, self.port) from exc


@contextlib.contextmanager
def aborted_on(cancel: threading.Event | None, client: HttpClient, poll: float = 0.02) -> Iterator[None]:
    """While the block runs, break ``client``'s connections as soon as ``cancel`` is set.

    A read blocked on the network then returns at once (the caller checks ``cancel`` when
    it sees the connection end). One watching thread, polling ``cancel`` every ``poll`` s.
    """
    if cancel is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if cancel.wait(poll):
                client.abort()
                return

    watcher = threading.Thread(target=watch, name="dicomnb-cancel", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()

