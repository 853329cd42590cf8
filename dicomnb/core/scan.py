"""Read the header of a DICOM file fast, reading only the bytes it needs.

The catalog needs about twenty attributes per instance. ``pydicom.dcmread`` builds a whole
dataset to give them; this scanner walks the element headers of little-endian files
(explicit or implicit VR) itself, skipping values by their length (a skipped value is never
read from disk) and sequences item by item, keeps the raw bytes of the attributes it wants,
and decodes them exactly as pydicom does (text with the file's SpecificCharacterSet goes
through pydicom's own decoders). It walks on to the pixel data so that a file cut short
anywhere in its header, or inside its pixel data, is reported as truncated.

What it does not handle (big-endian and deflated transfer syntaxes, unexpected VRs, a
dataset whose encoding contradicts its transfer syntax) goes to pydicom: ``read_header``
always answers with the same values ``pydicom.dcmread`` would give.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Callable
from typing import Any, BinaryIO

from dicomnb.core.errors import NotDicomError, TruncatedFileError, UnreadableFileError
from dicomnb.core.model import DICOM_FIELDS, INTEGER_FIELDS

__all__ = ["fields_from_dataset", "read_header", "read_header_bytes"]

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_DICOMDIR_NOT_INSTANCE = "a DICOMDIR (the index of media), not an instance: import it with import_dicomdir"

#: First read of a file; enough for the whole header of most files.
FIRST_READ = 8192
_O_RDONLY = os.O_RDONLY | getattr(os, "O_BINARY", 0)  # O_BINARY: Windows only
_CHUNK = 16384

_EXPL = struct.Struct("<HH2sH")
_EXPL_SWAPPED = struct.Struct("<L2sH")
_EXPL_CODE = struct.Struct("<LHH")  # the VR as a number: no bytes object made per element
_IMPL = struct.Struct("<HHL")
_IMPL_SWAPPED = struct.Struct("<LL")
_U32 = struct.Struct("<L")
_US = struct.Struct("<H")

_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD
_PIXEL_GROUP = 0x7FE0

_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
     b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
_VALID_VRS = _LONG_VRS | _SHORT_VRS
_SHORT_VR_CODES = frozenset(_US.unpack(vr)[0] for vr in _SHORT_VRS)
_LONG_VR_CODES = frozenset(_US.unpack(vr)[0] for vr in _LONG_VRS)
_VR_BYTES = {_US.unpack(vr)[0]: vr for vr in _VALID_VRS}
# 1 at the number of each short VR: indexing bytes is a little cheaper than a set lookup.
_short_vr_table = bytearray(0x10000)
for _code in _SHORT_VR_CODES:
    _short_vr_table[_code] = 1
_SHORT_VR_TABLE = bytes(_short_vr_table)
del _short_vr_table, _code

# tag -> (keyword, VR): the attributes the catalog keeps (plus the character set).
_WANTED: dict[int, tuple[str, bytes]] = {
    0x00080005: ("SpecificCharacterSet", b"CS"),
    0x00080016: ("SOPClassUID", b"UI"),
    0x00080018: ("SOPInstanceUID", b"UI"),
    0x00080020: ("StudyDate", b"DA"),
    0x00080030: ("StudyTime", b"TM"),
    0x00080050: ("AccessionNumber", b"SH"),
    0x00080060: ("Modality", b"CS"),
    0x00081030: ("StudyDescription", b"LO"),
    0x0008103E: ("SeriesDescription", b"LO"),
    0x00100010: ("PatientName", b"PN"),
    0x00100020: ("PatientID", b"LO"),
    0x00100030: ("PatientBirthDate", b"DA"),
    0x00100040: ("PatientSex", b"CS"),
    0x0020000D: ("StudyInstanceUID", b"UI"),
    0x0020000E: ("SeriesInstanceUID", b"UI"),
    0x00200011: ("SeriesNumber", b"IS"),
    0x00200013: ("InstanceNumber", b"IS"),
    0x00280008: ("NumberOfFrames", b"IS"),
    0x00280010: ("Rows", b"US"),
    0x00280011: ("Columns", b"US"),
}


# The wanted VRs whose value is plain ASCII text (UI, CS, DA, TM), decoded as _string() does.
_PLAIN_VRS = frozenset(vr for _, vr in _WANTED.values()) - {b"US", b"IS", b"LO", b"SH", b"PN"}

_WANTED_SWAPPED = {(tag & 0xFFFF) << 16 | tag >> 16: tag for tag in _WANTED}
_NOTHING: dict[int, int] = {}
_ITEM_END_SWAPPED = (_ITEM_END & 0xFFFF) << 16 | _ITEM_END >> 16

# Groups a dataset written without preamble may start with.
_FIRST_GROUPS = frozenset({0x0002, 0x0004, 0x0008})


class _Fallback(Exception):
    """The scanner does not handle this file: let pydicom read it."""


class _Truncated(Exception):
    """The data ends inside an element."""


class _Window:
    """A window of bytes over a file (or all of it, for data already in memory).

    Element values that are skipped are never read: asking for an offset past the window
    reads a new window there.
    """

    __slots__ = ("base", "buf", "file", "size")

    def __init__(self, buf: bytes, size: int, file: BinaryIO | int | None) -> None:
        self.buf = buf
        self.base = 0
        self.size = size
        self.file = file  # a file object, or a descriptor from os.open

    def at(self, offset: int, need: int) -> tuple[bytes, int]:
        """Return ``(buf, pos)`` with ``need`` bytes at file offset ``offset`` from ``pos``."""
        if offset + need > self.size:
            raise _Truncated
        base = self.base
        if offset >= base and offset + need <= base + len(self.buf):
            return self.buf, offset - base
        file = self.file
        if file is None:  # pragma: no cover - the whole file is in memory
            raise _Truncated
        if isinstance(file, int):
            os.lseek(file, offset, os.SEEK_SET)
            buf = os.read(file, max(need, _CHUNK))
        else:
            file.seek(offset)
            buf = file.read(max(need, _CHUNK))
        if len(buf) < need:
            raise _Truncated
        self.buf, self.base = buf, offset
        return buf, 0


def _walk(
    win: _Window,
    offset: int,
    implicit: bool,
    wanted: dict[int, list[Any]] | None,
    nested: bool,
) -> int:
    """Walk elements from ``offset``; return the offset where the walk stopped.

    At the top level (``nested`` false) the walk stops at the pixel data (returning the
    offset of its element header) or at the end of the file; values of wanted tags are
    stored into ``wanted`` (keyed by tag) as ``[vr, bytes]``. In an item of undefined
    length it stops after the item delimiter.

    Tags are compared in their on-disk little-endian form ("swapped": element in the high
    half, group in the low half), which saves a shift per element in this hot loop.

    Most elements are ordinary: a header and (for a wanted tag) a value inside the window,
    a known VR, a defined length, a group below the pixel data. An inner loop walks those
    with as little work as it can (an element costs about one ``unpack_from``); any other
    element (the window's edge, a sequence or item of undefined length, a delimiter, the
    pixel data, an unknown VR) is left to the general step below it, which handles one
    element and hands back to the inner loop. Both give the same result for an ordinary
    element, so where the inner loop stops does not change what the walk finds.
    """
    size = win.size
    buf, base = win.buf, win.base
    pos = offset - base
    blen = len(buf)
    wanted_tags = _WANTED_SWAPPED if wanted is not None else _NOTHING
    short_vrs, long_vrs = _SHORT_VRS, _LONG_VRS
    short_codes, long_codes, vr_bytes = _SHORT_VR_CODES, _LONG_VR_CODES, _VR_BYTES
    unpack_expl, unpack_impl, unpack_u32 = _EXPL_SWAPPED.unpack_from, _IMPL_SWAPPED.unpack_from, _U32.unpack_from
    unpack_code = _EXPL_CODE.unpack_from
    short_table = _SHORT_VR_TABLE
    vr: bytes | None = None
    while True:
        # The inner loop: ordinary elements only (see the docstring).
        limit = blen - 12
        if implicit:
            while pos <= limit:
                stag, length = unpack_impl(buf, pos)
                if length == _UNDEFINED or stag & 0xFFFF >= 0x7FE0:
                    break
                if stag in wanted_tags:
                    end = pos + 8 + length
                    if end > blen:
                        break
                    wanted[wanted_tags[stag]] = [None, buf[pos + 8 : end]]  # type: ignore[index]
                    pos = end
                else:
                    pos += 8 + length
        else:
            while pos <= limit:
                stag, code, length = unpack_code(buf, pos)
                if short_table[code] and stag not in wanted_tags and stag & 0xFFFF < 0x7FE0:
                    pos += 8 + length  # the most common element of all
                    continue
                if code in short_codes:
                    vpos = pos + 8
                elif code in long_codes:
                    (length,) = unpack_u32(buf, pos + 8)
                    if length == _UNDEFINED:
                        break
                    vpos = pos + 12
                else:
                    break
                if stag & 0xFFFF >= 0x7FE0:
                    break
                if stag in wanted_tags:
                    end = vpos + length
                    if end > blen:
                        break
                    wanted[wanted_tags[stag]] = [vr_bytes[code], buf[vpos:end]]  # type: ignore[index]
                    pos = end
                else:
                    pos = vpos + length
        # The general step: one element, whatever it is.
        if pos + 12 > blen:
            here = base + pos
            if here >= size:
                if nested or here > size:
                    raise _Truncated
                return here
            if size - here < 8:
                raise _Truncated
            buf, pos = win.at(here, min(12, size - here))
            base, blen = win.base, len(buf)
        if implicit:
            stag, length = unpack_impl(buf, pos)
            vpos = pos + 8
        else:
            stag, vr, length = unpack_expl(buf, pos)
            if vr in short_vrs:
                vpos = pos + 8
            elif vr in long_vrs:
                if pos + 12 > blen:
                    raise _Truncated
                length = unpack_u32(buf, pos + 8)[0]
                vpos = pos + 12
            elif stag & 0xFFFF == 0xFFFE:
                length = unpack_u32(buf, pos + 4)[0]
                vpos = pos + 8
            else:
                raise _Fallback
        group = stag & 0xFFFF
        if group >= 0x7FE0:
            if group == 0xFFFE:
                if nested and stag == _ITEM_END_SWAPPED:
                    return base + vpos
                raise _Fallback  # a delimiter where an element should be
            if group == _PIXEL_GROUP and stag >> 16 >= 0x0008 and not nested:
                return base + pos
        if length == _UNDEFINED:
            # A sequence (SQ, or UN / implicit with undefined length: implicit VR inside).
            end = _skip_sequence(win, base + vpos, implicit or vr == b"UN")
            buf, base = win.buf, win.base
            pos, blen = end - base, len(buf)
            continue
        if stag in wanted_tags:
            if vpos + length > blen:
                buf, vpos = win.at(base + vpos, length)
                base, blen = win.base, len(buf)
            wanted[wanted_tags[stag]] = [vr, buf[vpos : vpos + length]]  # type: ignore[index]
        pos = vpos + length


def _skip_sequence(win: _Window, offset: int, implicit: bool) -> int:
    """Skip the items of a sequence of undefined length; return the offset after it."""
    while True:
        buf, pos = win.at(offset, 8)
        group, elem, length = _IMPL.unpack_from(buf, pos)
        tag = group << 16 | elem
        if tag == _SEQ_END:
            return offset + 8
        if tag != _ITEM:
            raise _Fallback
        if length == _UNDEFINED:
            offset = _walk(win, offset + 8, implicit, None, nested=True)
        else:
            offset += 8 + length
            if offset > win.size:
                raise _Truncated


def _read_meta(win: _Window, offset: int) -> tuple[int, str | None, str | None]:
    """Read the group 0002 elements from ``offset``.

    Returns the offset after them, the transfer syntax and the media storage SOP class.
    """
    transfer_syntax = media_class = None
    while True:
        if offset + 8 > win.size:
            return offset, transfer_syntax, media_class
        buf, pos = win.at(offset, 8)
        group, elem, vr, length = _EXPL.unpack_from(buf, pos)
        if group != 0x0002:
            return offset, transfer_syntax, media_class
        if vr in _LONG_VRS:
            buf, pos = win.at(offset, 12)
            (length,) = _U32.unpack_from(buf, pos + 8)
            header = 12
        elif vr in _SHORT_VRS:
            header = 8
        else:
            raise _Fallback
        if length == _UNDEFINED:
            raise _Fallback
        if elem in (0x0002, 0x0010):
            buf, pos = win.at(offset + header, length)
            if elem == 0x0010:
                transfer_syntax = _string(buf[pos : pos + length])
            else:
                media_class = _string(buf[pos : pos + length])
        offset += header + length


def _looks_explicit(buf: bytes, pos: int) -> bool:
    return buf[pos + 4 : pos + 6] in _VALID_VRS


def _scan(win: _Window) -> dict[str, Any]:
    head = win.buf
    preamble = head[128:132] == b"DICM"
    if preamble:
        offset, transfer_syntax, media_class = _read_meta(win, 132)
    elif head[:2] == b"\x02\x00" and _looks_explicit(head, 0):
        offset, transfer_syntax, media_class = _read_meta(win, 0)  # meta without preamble
    else:
        offset, transfer_syntax, media_class = 0, None, None
    if media_class == MEDIA_STORAGE_DIRECTORY:
        raise NotDicomError(_DICOMDIR_NOT_INSTANCE)
    if transfer_syntax in (EXPLICIT_BE, DEFLATED_LE):
        raise _Fallback
    if win.size - offset < 8:
        if preamble:
            raise _Truncated
        raise NotDicomError("no DICOM preamble and too short to hold a DICOM dataset")
    buf, pos = win.at(offset, 8)
    explicit_bytes = _looks_explicit(buf, pos)
    if transfer_syntax is None:
        if not preamble:
            (group,) = _US.unpack_from(buf, pos)
            if group not in _FIRST_GROUPS:
                if struct.unpack_from(">H", buf, pos)[0] in _FIRST_GROUPS and explicit_bytes:
                    raise _Fallback  # big endian without meta information: pydicom reads it
                raise NotDicomError("no DICOM preamble and no plausible first element")
        implicit = not explicit_bytes
        transfer_syntax = IMPLICIT_LE if implicit else EXPLICIT_LE
    else:
        implicit = transfer_syntax == IMPLICIT_LE
        if implicit == explicit_bytes:
            raise _Fallback  # the dataset is not encoded as its transfer syntax says
    raw: dict[int, list[Any]] = {}
    end = _walk(win, offset, implicit, raw, nested=False)
    if end < win.size:  # stopped at the pixel data: is all of it there?
        buf, pos = win.at(end, min(12, win.size - end))
        if len(buf) - pos < 8:
            raise _Truncated
        if implicit:
            (length,) = _U32.unpack_from(buf, pos + 4)
            header = 8
        elif buf[pos + 4 : pos + 6] in _LONG_VRS:
            buf, pos = win.at(end, 12)
            (length,) = _U32.unpack_from(buf, pos + 8)
            header = 12
        else:
            (length,) = _US.unpack_from(buf, pos + 6)
            header = 8
        if length != _UNDEFINED and end + header + length > win.size:
            raise _Truncated
    return _decode(raw, implicit, transfer_syntax, preamble)


def _string(value: bytes) -> str:
    return value.decode("latin-1").rstrip(" \x00")


def _integer(text: str) -> int | None:
    first = text.split("\\", 1)[0].strip()
    if not first:
        return None
    try:
        return int(first)
    except ValueError:
        pass
    try:
        number = float(first)
    except ValueError:
        return None
    return int(number) if number == int(number) else None


def _decode(raw: dict[int, list[Any]], implicit: bool, transfer_syntax: str, preamble: bool) -> dict[str, Any]:
    charset = raw.pop(0x00080005, None)
    encodings: list[str] | None = None
    out: dict[str, Any] = dict.fromkeys(DICOM_FIELDS)
    out["TransferSyntaxUID"] = transfer_syntax or None
    for tag, (vr, value) in raw.items():
        keyword, expected_vr = _WANTED[tag]
        if vr is not None and vr != expected_vr and vr != b"UN":
            raise _Fallback  # an unusual VR: pydicom knows how it converts it
        if not value:
            continue
        if expected_vr in _PLAIN_VRS:  # most of the values: tried first
            out[keyword] = value.decode("latin-1").rstrip(" \x00") or None
        elif expected_vr == b"US":
            out[keyword] = _US.unpack_from(value)[0] if len(value) >= 2 else None
        elif expected_vr == b"IS":
            out[keyword] = _integer(value.decode("latin-1"))
        else:  # LO, SH, PN: text in the file's character set
            if value.isascii() and 0x1B not in value:
                text = value.decode("latin-1")
                if expected_vr == b"PN":
                    text = value.rstrip(b"\x00 ").decode("latin-1")
                elif "\\" in text:
                    text = "\\".join(part.rstrip("\x00 ") for part in text.split("\\"))
                else:
                    text = text.rstrip("\x00 ")
            else:
                if encodings is None:
                    encodings = _encodings(charset[1] if charset else b"")
                text = _decode_text(value, encodings, expected_vr)
            out[keyword] = text or None
    if out["SOPInstanceUID"] is None:
        if preamble:
            raise UnreadableFileError(
                "the file has a DICOM preamble but no SOPInstanceUID (0008,0018): "
                "it is not a conformant DICOM instance"
            )
        raise NotDicomError("no SOPInstanceUID (0008,0018): not a DICOM instance")
    return out


def _encodings(charset: bytes) -> list[str]:
    from pydicom.charset import convert_encodings

    values = _string(charset).split("\\") if charset else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_encodings(values or None)


def _decode_text(value: bytes, encodings: list[str], vr: bytes) -> str:
    from pydicom.values import convert_PN, convert_text

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = convert_PN(value, encodings) if vr == b"PN" else convert_text(value, encodings)
    return _text_value(decoded) or ""


def _text_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    return text or None


def fields_from_dataset(ds: Any) -> dict[str, Any]:
    """Return the catalog's attributes of a pydicom dataset, normalised like ``read_header``.

    Text is ``str`` (multiple values joined with ``\\``), numbers are ``int``, and absent or
    empty values are ``None``.
    """
    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword in DICOM_FIELDS[:-1]:
            try:
                value = ds.get(keyword)
            except Exception:  # noqa: BLE001 - a value pydicom cannot convert is absent to us
                value = None
            if keyword in INTEGER_FIELDS:
                if value is None or value == "":
                    out[keyword] = None
                elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
                    out[keyword] = _integer(str(value[0])) if len(value) else None
                else:
                    out[keyword] = _integer(str(value))
            else:
                out[keyword] = _text_value(value)
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if not transfer_syntax:
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if implicit is None:
            transfer_syntax = None
        elif implicit:
            transfer_syntax = IMPLICIT_LE
        else:
            transfer_syntax = EXPLICIT_LE if little else EXPLICIT_BE
    out["TransferSyntaxUID"] = str(transfer_syntax) if transfer_syntax else None
    return out


def _read_with_pydicom(open_file: Callable[[], BinaryIO], preamble: bool) -> dict[str, Any]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with open_file() as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
    except (InvalidDicomError, ValueError, KeyError, IndexError, struct.error, EOFError, OSError,
            NotImplementedError, TypeError, AttributeError) as exc:
        if not preamble:
            raise NotDicomError(f"not DICOM: {exc}") from exc
        raise UnreadableFileError(f"pydicom cannot parse the header: {exc}") from exc
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("MediaStorageSOPClassUID") == MEDIA_STORAGE_DIRECTORY:
        raise NotDicomError(_DICOMDIR_NOT_INSTANCE)
    fields = fields_from_dataset(ds)
    if fields["SOPInstanceUID"] is None:
        if len(ds) == 0 and preamble:
            raise TruncatedFileError("the file ends inside its header: it was cut short")
        if preamble:
            raise UnreadableFileError(
                "the file has a DICOM preamble but no SOPInstanceUID (0008,0018): "
                "it is not a conformant DICOM instance"
            )
        raise NotDicomError("no SOPInstanceUID (0008,0018): not a DICOM instance")
    return fields


_TRUNCATED = "the file ends inside its {}: it was cut short (an interrupted copy or download?)"


def _scan_or_fallback(win: _Window, open_file: Callable[[], BinaryIO]) -> dict[str, Any]:
    preamble = win.buf[128:132] == b"DICM"
    try:
        return _scan(win)
    except (_Truncated, struct.error):
        if not preamble:
            raise NotDicomError("no DICOM preamble and the data does not parse as DICOM") from None
        raise TruncatedFileError(_TRUNCATED.format("header or pixel data")) from None
    except _Fallback:
        return _read_with_pydicom(open_file, preamble)


def _read_head(fd: int) -> tuple[bytes, int]:
    """Read the first :data:`FIRST_READ` bytes of an open file; return them and the file's size.

    A plain descriptor (``os.open``) costs a few microseconds less per file than a file
    object, which counts when a folder holds many small files.
    """
    head = os.read(fd, FIRST_READ)
    return head, (os.fstat(fd).st_size if len(head) == FIRST_READ else len(head))


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the catalog's attributes of the DICOM file at ``path``.

    Raises
    ------
    NotDicomError
        The file is not DICOM (no preamble and nothing that parses as a dataset).
    TruncatedFileError
        The file ends inside its header or its pixel data.
    UnreadableFileError
        The file cannot be opened or parsed.
    """
    try:
        fd = os.open(path, _O_RDONLY)
        try:
            head, size = _read_head(fd)
            return _scan_or_fallback(_Window(head, size, fd), lambda: open(path, "rb"))
        finally:
            os.close(fd)
    except OSError as exc:
        raise UnreadableFileError(f"cannot read the file: {exc.strerror or exc}") from exc


def read_header_bytes(data: bytes) -> dict[str, Any]:
    """Return the catalog's attributes of a DICOM file held in memory (see :func:`read_header`)."""
    win = _Window(data, len(data), None)
    return _scan_or_fallback(win, lambda: io.BytesIO(data))
