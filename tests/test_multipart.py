"""The streaming multipart/related parser: any split of the body, bounded memory, cut bodies refused."""

from __future__ import annotations

import os
import random

import pytest

from dicomnb.core.errors import MalformedResponse
from dicomnb.sources.multipart import DATA, END, HEADERS, MultipartParser, content_type

BOUNDARY = "b0undary-7d1e"


def body(parts: list[bytes], *, preamble: bytes = b"", epilogue: bytes = b"\r\n", headers: bool = True) -> bytes:
    out = [preamble]
    for part in parts:
        out.append(f"--{BOUNDARY}\r\n".encode())
        if headers:
            out.append(f"Content-Type: application/dicom\r\nContent-Length: {len(part)}\r\n".encode())
        out.append(b"\r\n" + part + b"\r\n")
    out.append(f"--{BOUNDARY}--".encode() + epilogue)
    return b"".join(out)


def parse(data: bytes, sizes: list[int] | None = None) -> list[tuple[dict[str, str], bytes]]:
    """The parts of ``data`` fed in pieces of ``sizes`` (cycled), as (headers, body)."""
    parser = MultipartParser(BOUNDARY)
    parts: list[tuple[dict[str, str], bytes]] = []
    current: list[bytes] = []
    headers: dict[str, str] = {}
    position, index = 0, 0
    sizes = sizes or [len(data) or 1]
    while position < len(data):
        size = sizes[index % len(sizes)]
        for kind, value in parser.feed(data[position:position + size]):
            if kind == HEADERS:
                headers, current = value, []
            elif kind == DATA:
                current.append(value)
            else:
                assert kind == END
                parts.append((headers, b"".join(current)))
        position += size
        index += 1
    parser.finish()
    return parts


# Bodies that look like boundaries without being one, CRLFs at the edges, empty parts.
TRICKY = [b"", b"\r\n", b"--", b"\r\n--", f"\r\n--{BOUNDARY[:-1]}".encode(), b"x" * 1000,
          f"--{BOUNDARY}".encode(), os.urandom(5000), b"\r\n\r\n", b"-\r\n-"]


@pytest.mark.parametrize("sizes", [None, [1], [2], [3, 7], [len(BOUNDARY) + 3], [4096]])
def test_parts_come_out_whole_whatever_the_split(sizes: list[int] | None) -> None:
    parts = parse(body(TRICKY), sizes)
    assert [p for _, p in parts] == TRICKY
    assert parts[0][0] == {"content-type": "application/dicom", "content-length": "0"}


def test_random_splits_and_preamble_epilogue() -> None:
    rng = random.Random(4)
    payloads = [rng.randbytes(rng.randint(0, 3000)) for _ in range(20)]
    data = body(payloads, preamble=b"ignored preamble\r\n", epilogue=b"\r\nignored epilogue")
    for _ in range(30):
        sizes = [rng.randint(1, 700) for _ in range(10)]
        assert [p for _, p in parse(data, sizes)] == payloads


def test_parts_without_headers_and_transport_padding() -> None:
    data = f"--{BOUNDARY}  \r\n\r\nabc\r\n--{BOUNDARY}\t\r\nX-Folded: one\r\n two\r\n\r\ndef\r\n--{BOUNDARY}--".encode()
    parts = parse(data, [3])
    assert parts == [({}, b"abc"), ({"x-folded": "one two"}, b"def")]


def test_memory_stays_bounded() -> None:
    parser = MultipartParser(BOUNDARY)
    parser.feed(f"--{BOUNDARY}\r\n\r\n".encode())
    chunk = os.urandom(1 << 20)
    written = 0
    for _ in range(64):  # a 64 MB part, fed 1 MB at a time
        for kind, value in parser.feed(chunk):
            assert kind == DATA
            written += len(value)
        assert len(parser._buffer) < len(BOUNDARY) + 8  # only a possible boundary start is kept
    events = parser.feed(f"\r\n--{BOUNDARY}--".encode())
    assert [k for k, _ in events] == [DATA, END] and written + len(events[0][1]) == 64 << 20
    parser.finish()


@pytest.mark.parametrize(("cut", "words"), [
    (b"", "holds no boundary"),
    (b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n", "in the headers of part 1"),
    (b"--" + BOUNDARY.encode() + b"\r\n\r\nhalf a file", "in the middle of part 1"),
    (b"--" + BOUNDARY.encode() + b"\r\n\r\nfile\r\n--" + BOUNDARY.encode(), "after part 1 without its closing"),
])
def test_cut_bodies_are_malformed(cut: bytes, words: str) -> None:
    parser = MultipartParser(BOUNDARY)
    parser.feed(cut)
    with pytest.raises(MalformedResponse, match=words):
        parser.finish()


@pytest.mark.parametrize("data", [
    f"--{BOUNDARY}garbage\r\n\r\n".encode(),
    f"--{BOUNDARY}\r\nno colon here\r\n\r\n".encode(),
])
def test_syntax_errors(data: bytes) -> None:
    with pytest.raises(MalformedResponse):
        MultipartParser(BOUNDARY).feed(data)


def test_endless_headers_and_bad_boundaries_are_refused() -> None:
    parser = MultipartParser(BOUNDARY, max_header_bytes=100)
    with pytest.raises(MalformedResponse, match="do not end within 100 bytes"):
        parser.feed(f"--{BOUNDARY}\r\n".encode() + b"X: " + b"y" * 200)
    for bad in ("", "x" * 300, "a\r\nb"):
        with pytest.raises(MalformedResponse, match="boundary"):
            MultipartParser(bad)


def test_content_type_parameters() -> None:
    media, params = content_type('multipart/related; type="application/dicom"; boundary="a b;c"; transfer-syntax=*')
    assert media == "multipart/related"
    assert params == {"type": "application/dicom", "boundary": "a b;c", "transfer-syntax": "*"}
    assert content_type("Application/DICOM")[0] == "application/dicom"
