"""A streaming parser of ``multipart/related`` bodies (RFC 2046 5.1, RFC 2387), as WADO-RS sends them.

WADO-RS answers a series with one body holding every instance, each a part::

    --BOUNDARY\\r\\n
    Content-Type: application/dicom\\r\\n
    \\r\\n
    <Part 10 file>\\r\\n
    --BOUNDARY\\r\\n
    ...
    --BOUNDARY--\\r\\n

A series can be gigabytes, so nothing here holds a part: :class:`MultipartParser` is fed the
body piece by piece as it arrives and says what it found (:data:`HEADERS` of a part, a
piece of its :data:`DATA`, its :data:`END`), keeping back only the last few bytes that could
be the start of a boundary. Memory stays bounded by the pieces fed, whatever the part sizes.

A body that stops before its closing boundary (cut short), or breaks the syntax, raises
:class:`~dicomnb.core.errors.MalformedResponse`: the caller then throws away the part it
was writing.
"""

from __future__ import annotations

import email.message
from typing import Any

from dicomnb.core.errors import MalformedResponse

__all__ = ["DATA", "END", "HEADERS", "MultipartParser", "content_type"]

#: Event kinds: a part's headers (a dict, names in lower case), a piece of its body (bytes),
#: the end of the part (None).
HEADERS, DATA, END = "headers", "data", "end"

_PREAMBLE, _AFTER_BOUNDARY, _HEADERS, _BODY, _DONE = range(5)
_MAX_BOUNDARY_LINE = 1024  # transport padding after a boundary: a few spaces at most


def content_type(value: str) -> tuple[str, dict[str, str]]:
    """The media type (lower case) and the parameters (names in lower case, values unquoted)
    of a ``Content-Type`` header value."""
    message = email.message.Message()
    message["content-type"] = value
    params = message.get_params() or []
    return message.get_content_type(), {str(k).lower(): str(v) for k, v in params[1:]}


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = ""
    for line in block.decode("latin-1").split("\r\n"):
        if line[:1] in (" ", "\t") and last:  # a folded line continues the previous header
            headers[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MalformedResponse(f"a part header line is not 'Name: value': {line[:80]!r}")
        last = name.strip().lower()
        headers[last] = value.strip()
    return headers


class MultipartParser:
    """Incremental parser of one ``multipart/related`` body.

    >>> parser = MultipartParser(boundary)
    >>> for chunk in body:                       # as it arrives, any sizes
    ...     for kind, value in parser.feed(chunk):
    ...         ...                              # HEADERS → open, DATA → write, END → close
    >>> parser.finish()                          # raises if the body was cut short

    Parameters
    ----------
    boundary : str or bytes
        The ``boundary`` parameter of the body's Content-Type.
    max_header_bytes : int
        The most a part's header block may hold (a body that never ends its headers is not
        read into memory without end).

    Attributes
    ----------
    parts : int
        Parts begun so far.
    """

    def __init__(self, boundary: str | bytes, *, max_header_bytes: int = 65536) -> None:
        raw = boundary.encode("latin-1") if isinstance(boundary, str) else bytes(boundary)
        if not raw or len(raw) > 200 or b"\r" in raw or b"\n" in raw:
            raise MalformedResponse(f"the multipart boundary {raw[:80]!r} is not usable (1 to 70 characters)")
        self._delimiter = b"\r\n--" + raw
        # The first boundary may open the body without the CRLF that precedes the others.
        self._buffer = b"\r\n"
        self._state = _PREAMBLE
        self._max_header_bytes = max_header_bytes
        self.parts = 0

    @property
    def complete(self) -> bool:
        """True once the closing boundary has been read."""
        return self._state == _DONE

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[str, Any]]:
        """Parse the next piece of the body; return the events it completes, in order.

        Raises
        ------
        MalformedResponse
            The body breaks the multipart syntax.
        """
        if self._state == _DONE:
            return []  # the epilogue after the closing boundary means nothing
        buffer = self._buffer + bytes(data)
        delimiter = self._delimiter
        keep = len(delimiter) - 1  # a boundary may begin in the last bytes: keep them back
        events: list[tuple[str, Any]] = []
        position = 0
        while True:
            state = self._state
            if state == _BODY:
                found = buffer.find(delimiter, position)
                if found < 0:
                    safe = len(buffer) - keep
                    if safe > position:
                        events.append((DATA, buffer[position:safe]))
                        position = safe
                    break
                if found > position:
                    events.append((DATA, buffer[position:found]))
                events.append((END, None))
                position = found + len(delimiter)
                self._state = _AFTER_BOUNDARY
            elif state == _PREAMBLE:
                found = buffer.find(delimiter, position)
                if found < 0:
                    position = max(position, len(buffer) - keep)
                    break
                position = found + len(delimiter)
                self._state = _AFTER_BOUNDARY
            elif state == _AFTER_BOUNDARY:
                if len(buffer) - position < 2:
                    break
                if buffer.startswith(b"--", position):
                    self._state = _DONE
                    position = len(buffer)
                    break
                end = buffer.find(b"\r\n", position)
                if end < 0:
                    if len(buffer) - position > _MAX_BOUNDARY_LINE:
                        raise MalformedResponse("a multipart boundary line does not end")
                    break
                if buffer[position:end].strip(b" \t"):
                    raise MalformedResponse("a multipart boundary is followed by text on its line")
                position = end + 2
                self._state = _HEADERS
            else:  # _HEADERS
                if len(buffer) - position < 2:
                    break
                if buffer.startswith(b"\r\n", position):  # a part without headers
                    headers: dict[str, str] = {}
                    position += 2
                else:
                    end = buffer.find(b"\r\n\r\n", position)
                    if end < 0:
                        if len(buffer) - position > self._max_header_bytes:
                            raise MalformedResponse(f"the headers of part {self.parts + 1} do not end "
                                                    f"within {self._max_header_bytes} bytes")
                        break
                    headers = _parse_headers(buffer[position:end])
                    position = end + 4
                self.parts += 1
                events.append((HEADERS, headers))
                self._state = _BODY
        self._buffer = buffer[position:]
        return events

    def finish(self) -> None:
        """Say the body has ended.

        Raises
        ------
        MalformedResponse
            It ended before its closing boundary: inside a part (cut short), or without
            any boundary at all.
        """
        if self._state == _DONE:
            return
        if self._state == _PREAMBLE:
            raise MalformedResponse("the multipart body holds no boundary: it is empty or not multipart")
        if self._state in (_HEADERS, _BODY):
            raise MalformedResponse(f"the multipart body was cut short in the middle of part {self.parts}"
                                    if self._state == _BODY else
                                    f"the multipart body was cut short in the headers of part {self.parts + 1}")
        raise MalformedResponse(f"the multipart body ends after part {self.parts} without its closing boundary")
