"""Reading the slices of a series for :mod:`dicomnb.core.volume`: decoding, headers, rescaling.

The machinery under :func:`~dicomnb.core.volume.load_volume` and
:func:`~dicomnb.core.volume.read_pixels`, kept apart so that each module stays readable:

- reading a dataset (a path, a catalog record, an archive entry) with pydicom's failures
  turned into dicomnb's errors, and decoding its pixel data (:func:`decode`; uncompressed
  monochrome data straight from its bytes, :func:`native_pixels`);
- :class:`SliceHeader`: what a volume needs of one slice's header, small enough to cross
  from a worker process;
- the Modality LUT applied into an array of the smallest exact type (:func:`fits`,
  :func:`rescale_into`, :func:`value_dtype`);
- the worker processes' side (:func:`decode_into`: decoding into a block of shared memory)
  and the helpers around it.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dicomnb.core.archive import in_archive, read_instance
from dicomnb.core.errors import DecoderMissing, DicomnbError, InputError, UnreadableFileError
from dicomnb.core.overrides import apply_to_dataset

if TYPE_CHECKING:
    from dicomnb.core.model import InstanceRecord

__all__ = [
    "CODECS_HINT",
    "DEFER_BYTES",
    "NATIVE_SYNTAXES",
    "RLE_LOSSLESS",
    "SliceHeader",
    "SlotMismatch",
    "dcmread",
    "decode",
    "decode_into",
    "decoder_installed",
    "fits",
    "floats",
    "guessed_dtype",
    "guessed_slots",
    "has_pixels",
    "header_of",
    "in_order",
    "is_dataset",
    "modality_lut_applied",
    "native_pixels",
    "open_source",
    "plain_file",
    "plain_native",
    "pool_running",
    "read_slice",
    "rle_pixels",
    "rescale_into",
    "rescale_of",
    "shared_folder",
    "stack",
    "stored_dtype",
    "value_dtype",
    "where_of",
]


CODECS_HINT = (
    "install a decoder for it: pip install 'dicomnb[codecs]' "
    "(pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle)"
)


def where_of(record: Any) -> str:
    if isinstance(record, str):
        return record
    if is_dataset(record):
        return str(getattr(record, "filename", None) or record.get("SOPInstanceUID", "the dataset"))
    return f"{record.path}::{record.member}" if in_archive(record) else record.path


def is_dataset(source: Any) -> bool:
    from pydicom.dataset import Dataset

    return isinstance(source, Dataset)


def open_source(source: Any, *, stop_before_pixels: bool = False) -> Any:
    """The dataset of a source of :func:`load_volume`: read it, unless it is one already."""
    return source if is_dataset(source) else dcmread(source, stop_before_pixels=stop_before_pixels)


def dcmread(record: InstanceRecord | str, **options: Any) -> Any:
    """``pydicom.dcmread`` of a path, a catalog record or its archive entry, with ``options``.

    A record's :attr:`~dicomnb.core.model.InstanceRecord.overrides` are set in the dataset.

    Raises
    ------
    UnreadableFileError
        pydicom cannot read it.
    """
    import pydicom

    where = where_of(record)
    try:
        source = record if isinstance(record, str) else read_instance(record)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # force: the catalog holds datasets written without preamble too (the scanner read them)
            ds = pydicom.dcmread(source, force=True, **options)
    except DicomnbError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types
        raise UnreadableFileError(f"cannot read {where}: {exc}") from exc
    overrides = () if isinstance(record, str) else record.overrides
    return apply_to_dataset(ds, overrides) if overrides else ds


def has_pixels(ds: Any) -> bool:
    return "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds


#: Transfer syntaxes whose pixel data is the values as they are, little endian.
NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})


def _monochrome_frame(ds: Any) -> tuple[np.dtype, int] | None:
    """``(stored dtype, unused high bits)`` of a monochrome single-frame image of 8, 16 or 32
    bits allocated; else None."""
    try:
        allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        signed = int(ds.PixelRepresentation) == 1
        plain = (int(ds.get("SamplesPerPixel", 1) or 1) == 1 and int(ds.get("NumberOfFrames", 1) or 1) == 1
                 and str(ds.get("PhotometricInterpretation", "")).strip() in ("MONOCHROME1", "MONOCHROME2")
                 and int(ds.Rows) > 0 and int(ds.Columns) > 0)
    except (AttributeError, TypeError, ValueError):
        return None
    if not plain or allocated not in (8, 16, 32) or not 1 <= stored <= allocated:
        return None
    return np.dtype(f"{'i' if signed else 'u'}{allocated // 8}"), allocated - stored


def plain_native(ds: Any) -> tuple[np.dtype, int] | None:
    """``(stored dtype, unused high bits)`` of a monochrome single-frame image whose pixel data
    is its values as they are (uncompressed, little endian, 8, 16 or 32 bits); else None."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax not in NATIVE_SYNTAXES or sys.byteorder != "little":
        return None
    return _monochrome_frame(ds)


def native_pixels(ds: Any) -> np.ndarray | None:
    """The values of one uncompressed little-endian monochrome frame, straight from its bytes.

    pydicom's ``pixel_array`` takes about 0.7 ms for a 512 × 512 slice whose values are
    already in the file as they are; this takes a few µs. What pydicom does to such data
    is done here too: unused high bits (BitsStored < BitsAllocated) cleared or, for signed
    values, sign-extended. Anything less plain (other syntaxes, colour, several frames,
    1-bit, float, data shorter than the header says) returns None, for ``pixel_array``.
    """
    plan = plain_native(ds)
    data = ds.get("PixelData") if plan is not None else None
    if plan is None or not isinstance(data, bytes):
        return None
    dtype, unused = plan
    count = int(ds.Rows) * int(ds.Columns)
    if len(data) < count * dtype.itemsize:
        return None
    pixels = np.frombuffer(data, dtype=dtype, count=count).reshape(int(ds.Rows), int(ds.Columns))
    if unused:
        pixels = np.right_shift(np.left_shift(pixels, unused), unused)
    return pixels


#: RLE Lossless.
RLE_LOSSLESS = "1.2.840.10008.1.2.5"


def rle_pixels(ds: Any) -> np.ndarray | None:
    """The values of one RLE Lossless monochrome frame, decoded by pylibjpeg-rle directly.

    About 0.4 ms for a 512 × 512 slice, where pydicom's ``pixel_array`` (the same decoder,
    and its checks) takes about 0.6 ms. The same values: unused high bits cleared or
    sign-extended, as pydicom does. None when pylibjpeg-rle is not installed, the frame is not
    that plain (colour, several frames, 1-bit) or it does not decode (pydicom then says why).
    """
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    plan = None
    if syntax == RLE_LOSSLESS and sys.byteorder == "little" and isinstance(ds.get("PixelData"), bytes):
        plan = _monochrome_frame(ds)
    if plan is None:
        return None
    try:
        from pydicom.encaps import generate_frames
        from rle.utils import decode_pixel_data
    except ImportError:
        return None
    dtype, unused = plan
    rows, columns = int(ds.Rows), int(ds.Columns)
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        decoded = decode_pixel_data(frame, version=2, rows=rows, columns=columns, samples_per_pixel=1,
                                    bits_allocated=dtype.itemsize * 8, byteorder="<")
    except Exception:  # noqa: BLE001 - pydicom's own decoding gives the error
        return None
    if len(decoded) < rows * columns * dtype.itemsize:
        return None
    pixels = np.frombuffer(decoded, dtype=dtype, count=rows * columns).reshape(rows, columns)
    if unused:
        np.left_shift(pixels, unused, out=pixels)
        np.right_shift(pixels, unused, out=pixels)
    return pixels


def decode(ds: Any, where: str) -> np.ndarray:
    """``ds.pixel_array`` (or its equal, faster, for plain uncompressed data), with pydicom's
    failures turned into our errors."""
    if not has_pixels(ds):
        raise InputError(f"{where} has no pixel data (SOP class {ds.get('SOPClassUID', '?')})")
    fast = native_pixels(ds)
    if fast is None:
        fast = rle_pixels(ds)
    if fast is not None:
        return fast
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - pydicom and the decoders raise many types
        syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
        if syntax is not None and not decoder_installed(syntax):
            name = getattr(syntax, "name", syntax)
            raise DecoderMissing(f"{where}: no installed decoder handles {name}; {CODECS_HINT}") from exc
        # a decoder is there and failed: the data is broken, not the installation
        raise UnreadableFileError(f"cannot decode the pixel data of {where}: {exc}") from exc


def decoder_installed(syntax: Any) -> bool:
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(syntax).is_available)
    except (NotImplementedError, ValueError):  # no decoder for it exists in pydicom at all
        return False


# -- One slice's header, as much as a volume needs (small: it crosses process boundaries) --
@dataclass(slots=True)
class SliceHeader:
    ImagePositionPatient: tuple[float, ...] | None
    ImageOrientationPatient: tuple[float, ...] | None
    InstanceNumber: int | None
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float
    shape: tuple[int, ...]
    samples: int
    frames: int
    sop_instance_uid: str
    where: str


def floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(math.isfinite(v) for v in numbers) else None


def rescale_of(ds: Any, modality_lut: bool) -> tuple[float, float]:
    if not modality_lut:
        return 1.0, 0.0
    try:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        if str(ds.get("Modality", "")) == "RTDOSE" and "DoseGridScaling" in ds:
            slope *= float(ds.DoseGridScaling)  # stored integers × scaling = Gy
    except (TypeError, ValueError):
        return 1.0, 0.0
    return slope, intercept


def header_of(ds: Any, where: str, modality_lut: bool) -> SliceHeader:
    try:
        number: int | None = int(ds.InstanceNumber)
    except (AttributeError, TypeError, ValueError):
        number = None
    slope, intercept = rescale_of(ds, modality_lut)
    spacing = floats(ds.get("PixelSpacing"), 2)
    return SliceHeader(
        ImagePositionPatient=floats(ds.get("ImagePositionPatient"), 3),
        ImageOrientationPatient=floats(ds.get("ImageOrientationPatient"), 6),
        InstanceNumber=number,
        pixel_spacing=(spacing[0], spacing[1]) if spacing else None,
        slope=slope,
        intercept=intercept,
        shape=(int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)),
        samples=int(ds.get("SamplesPerPixel", 1) or 1),
        frames=int(ds.get("NumberOfFrames", 1) or 1),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        where=where,
    )


def modality_lut_applied(ds: Any, pixels: np.ndarray, modality_lut: bool) -> np.ndarray:
    """Pixels through a Modality LUT Sequence, if the dataset has one (rescales are applied later)."""
    if modality_lut and "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(pixels, ds))
    return pixels


def read_slice(source: Any, modality_lut: bool) -> tuple[SliceHeader, np.ndarray]:
    """Read and decode one single-frame instance: its header and its stored (or LUT) values."""
    where = where_of(source)
    ds = open_source(source)
    pixels = modality_lut_applied(ds, decode(ds, where), modality_lut)
    header = header_of(ds, where, modality_lut)
    if "ModalityLUTSequence" in ds and modality_lut:
        header.slope, header.intercept = 1.0, 0.0
    return header, pixels


class SlotMismatch(Exception):
    """A worker decoded a slice that does not fit its slot of the shared block."""


def fits(dtype: np.dtype, pixels: np.ndarray, slope: float, intercept: float) -> bool:
    """Whether ``pixels × slope + intercept`` is held exactly by ``dtype`` (float32: to its precision),
    the stored values (copied in first) and the product on the way included."""
    if dtype.kind == "f":
        return True
    if pixels.dtype.kind == "f" or not (float(slope).is_integer() and float(intercept).is_integer()):
        return False
    if pixels.size == 0:
        return True
    low, high = int(pixels.min()), int(pixels.max())
    ends = (low, high, low * int(slope), high * int(slope), low * int(slope) + int(intercept),
            high * int(slope) + int(intercept))
    limits = np.iinfo(dtype)
    return limits.min <= min(ends) and max(ends) <= limits.max


def rescale_into(out: np.ndarray, pixels: np.ndarray, slope: float, intercept: float) -> None:
    """Write ``pixels × slope + intercept`` into ``out`` (a slice of the volume, of a type that
    holds the result: see :func:`fits`)."""
    if slope == 1 and intercept == 0:
        out[...] = pixels
    elif out.dtype.kind == "f":
        np.multiply(pixels, slope, out=out, casting="unsafe")
        out += intercept
    else:  # integers: exact, computed in the output type
        out[...] = pixels
        if slope != 1:
            out *= int(slope)
        out += int(intercept)


def value_dtype(slices: Sequence[np.ndarray], rescales: Sequence[tuple[float, float]]) -> np.dtype:
    """The smallest type holding every ``stored × slope + intercept`` exactly (from the values
    themselves: the stored type's range would widen every 16-bit CT to int32), else float32."""
    stored = slices[0].dtype
    if stored.kind == "f":
        return np.dtype(np.float32) if stored.itemsize <= 4 else stored
    if all(s == 1 and i == 0 for s, i in rescales) and all(p.dtype == stored for p in slices):
        return stored
    if not all(float(s).is_integer() and float(i).is_integer() for s, i in rescales):
        return np.dtype(np.float32)
    for candidate in (np.dtype(np.int16), np.dtype(np.int32)):
        if all(fits(candidate, p, s, i) for p, (s, i) in zip(slices, rescales, strict=True)):
            return candidate
    return np.dtype(np.float64)


def guessed_dtype(stored: np.dtype, slope: float, intercept: float, modality_lut: bool) -> np.dtype:
    """The type :func:`value_dtype` picks when every slice is like the first and fits int16: the
    worker processes write into it, and report a slice that does not fit."""
    if not modality_lut or (slope == 1 and intercept == 0):
        return stored
    if float(slope).is_integer() and float(intercept).is_integer():
        return np.dtype(np.int16)
    return np.dtype(np.float32)


def stack(slices: Sequence[np.ndarray], rescales: Sequence[tuple[float, float]], modality_lut: bool) -> np.ndarray:
    """One array of the slices with each one's rescale applied, in the type :func:`value_dtype` picks."""
    dtype = value_dtype(slices, rescales) if modality_lut else slices[0].dtype
    out = np.empty((len(slices), *slices[0].shape), dtype=dtype)
    for k, (pixels, (slope, intercept)) in enumerate(zip(slices, rescales, strict=True)):
        rescale_into(out[k], pixels, slope, intercept)
    return out


def decode_into(block: str, shape: tuple[int, ...], dtype: str, modality_lut: bool,
                 items: list[tuple[int, str]]) -> list[tuple[int, SliceHeader]]:
    """In a worker process: decode each ``(slot, path)``, rescaled, into the shared ``block`` file."""
    import mmap

    with open(block, "r+b") as file:
        mapped = mmap.mmap(file.fileno(), 0)
    slots = np.frombuffer(mapped, dtype=np.dtype(dtype)).reshape(shape)
    try:
        headers = []
        for slot, path in items:
            header, pixels = read_slice(path, modality_lut)
            if pixels.shape != shape[1:] or not fits(slots.dtype, pixels, header.slope, header.intercept):
                raise SlotMismatch(f"{path}: {pixels.shape} {pixels.dtype}")
            rescale_into(slots[slot], pixels, header.slope, header.intercept)
            headers.append((slot, header))
        return headers
    finally:
        del slots  # no view may outlive the mapping (a traceback would keep this frame's)
        mapped.close()


def stored_dtype(ds: Any) -> np.dtype | None:
    """The dtype pydicom decodes a monochrome image of ``ds`` into, when it is plain to tell."""
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if bits not in (8, 16, 32) or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return None
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def shared_folder(size: int) -> str | None:
    """Where the block shared with the worker processes goes: memory (``/dev/shm``) with room for
    it, else the temporary folder (the page cache); None when neither has room."""
    import tempfile

    for folder in ("/dev/shm", tempfile.gettempdir()):
        try:
            room = os.statvfs(folder)
        except (OSError, AttributeError):  # no such folder; or no statvfs (Windows)
            continue
        if room.f_bavail * room.f_frsize > 1.1 * size and os.access(folder, os.W_OK):
            return folder
    return None


def guessed_slots(sources: Sequence[Any]) -> list[int]:
    """A slot per source in the order the slices will likely take: by InstanceNumber when every
    record has one (the catalog's records do), else as given. A right guess saves moving them."""
    numbers = [getattr(s, "InstanceNumber", None) for s in sources]
    if all(isinstance(n, int) for n in numbers):
        ranked = sorted(range(len(sources)), key=lambda i: (numbers[i], i))
        slots = [0] * len(sources)
        for slot, i in enumerate(ranked):
            slots[i] = slot
        return slots
    return list(range(len(sources)))


def in_order(array: np.ndarray, order: list[int]) -> np.ndarray:
    """``array[order]`` without a second array: reversed as a view, else moved in place."""
    count = len(order)
    if order == list(range(count)):
        return array
    if order == list(range(count - 1, -1, -1)):
        return array[::-1]
    done = [False] * count
    spare = np.empty_like(array[0])
    for start in range(count):
        if done[start] or order[start] == start:
            continue
        # one cycle of the permutation: slot p takes what is in slot order[p]
        spare[...] = array[start]
        position = start
        while True:
            done[position] = True
            source = order[position]
            if source == start:
                array[position] = spare
                break
            array[position] = array[source]
            position = source
    return array


def plain_file(source: Any) -> str | None:
    """The path of a source that is a file of its own (not an archive entry, not a dataset)."""
    if isinstance(source, str):
        return source
    if is_dataset(source) or in_archive(source):
        return None
    return str(source.path)


#: Elements larger than this are left in the file when a header is read (the pixel data, and
#: any large private blob, which is read only if asked for).
DEFER_BYTES = 4096


def pool_running() -> bool:
    """Whether dicomnb's worker processes run (started by an import of many files, or a volume)."""
    parallel = sys.modules.get("dicomnb.core.parallel")  # not imported: no pool, and no import to pay
    return parallel is not None and bool(parallel.pool_running())
