"""Pixel data of a series as one numpy volume, sorted along the slice normal, with its geometry.

Two ways to get a series' pixels as one array:

- :func:`stack_volume`: the frames of a series in slice order, whatever they are (colour,
  one image, a cine loop), as pydicom gives them.
- :func:`load_volume`: a :class:`Volume`, a 3D grid in patient space (origin, direction
  cosines, spacing from the slice positions, the 4×4 affine), what reformats (MPR) and
  measurements need. A series that is no such grid raises :class:`NotAVolume`.

How :func:`load_volume` reads, measured on 2 cores (``benchmarks/bench_viewers.py``):

- **Uncompressed slices**: here, in two passes: every header (the pixel data left in the
  file), then each slice's values read from its file straight into the volume's array and
  rescaled in place. pydicom's ``pixel_array`` (0.7 ms for a 512 × 512 slice whose values
  are in the file as they are) and a stacking copy are skipped. A second core does not help
  here: reading is copying memory, threads hold the GIL while pydicom parses, and worker
  processes pay more for fresh shared pages than they save.
- **Compressed slices**: two are decoded here and the second is timed. When decoding the
  rest in dicomnb's worker processes (:mod:`dicomnb.core.parallel`) is worth their cost
  (starting them, fresh shared pages), they read, decode and rescale the slices straight
  into the memory of the volume's array, a file in ``/dev/shm`` that every process maps, so
  that no slice is copied from one process to another: JPEG 2000 (15-30 ms a slice)
  always; RLE (about 1 ms a slice, half of it reading the file and its header) only when
  they already run. Threads would not do: pydicom's parsing and its decoders hold the GIL.
- A series of fewer than 16 slices, or one the worker processes cannot open by themselves
  (archive entries, datasets in memory), is read here, one slice after the other.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dicomnb.core.errors import InputError, NotAVolume, UnreadableFileError
from dicomnb.core.settings import settings
from dicomnb.core.slices import (
    DEFER_BYTES,
    SliceHeader,
    SlotMismatch,
    dcmread,
    decode,
    decode_into,
    fits,
    floats,
    guessed_dtype,
    guessed_slots,
    header_of,
    in_order,
    is_dataset,
    modality_lut_applied,
    open_source,
    plain_file,
    plain_native,
    pool_running,
    read_slice,
    rescale_into,
    rescale_of,
    shared_folder,
    stack,
    stored_dtype,
    where_of,
)

if TYPE_CHECKING:
    from dicomnb.core.model import InstanceRecord

__all__ = [
    "NotAVolume",
    "Volume",
    "load_volume",
    "read_dataset",
    "read_pixels",
    "slice_order",
    "slice_position",
    "stack_volume",
]

Strategy = Literal["auto", "serial", "threads", "processes"]


#: Direction cosines that differ by more than this are different orientations.
_ORIENTATION_TOLERANCE = 1e-3
#: Slice gaps that differ from the median gap by more than this fraction make a volume irregular.
_SPACING_TOLERANCE = 0.02
#: Slices closer than this (mm) along the normal are at the same position.
_SAME_POSITION_MM = 1e-3
#: Fewer slices than this are decoded here, one by one: sending them to the pool costs more than it saves.
_PARALLEL_MIN = 16
#: Slices sent to a worker process at a time.
_BATCH = 8


def read_dataset(record: InstanceRecord | str | os.PathLike[str] | Any, *, stop_before_pixels: bool = False) -> Any:
    """The pydicom dataset of an instance: a record of the catalog, a file's path, or a
    pydicom dataset (returned as it is, whatever ``stop_before_pixels``).

    Raises
    ------
    UnreadableFileError
        pydicom cannot read it.
    """
    from pydicom.dataset import Dataset

    if isinstance(record, Dataset):
        return record
    if isinstance(record, os.PathLike):
        record = os.fspath(record)
    return dcmread(record, stop_before_pixels=stop_before_pixels)


def read_pixels(record: InstanceRecord | str, modality_lut: bool = True) -> tuple[Any, np.ndarray]:
    """Return ``(dataset, pixels)`` of one instance; rescaled with its Modality LUT if asked."""
    from pydicom.pixels import apply_modality_lut

    ds = read_dataset(record)
    pixels = decode(ds, where_of(record))
    if not pixels.flags.writeable:  # a view of the file's bytes: the caller may change its array
        pixels = pixels.copy()
    if modality_lut and ("RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds):
        pixels = apply_modality_lut(pixels, ds)
    return ds, pixels


def slice_position(ds: Any) -> float | None:
    try:
        orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=float)
        position = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=float)
    except (AttributeError, TypeError, ValueError):
        return None
    if orientation.shape != (6,) or position.shape != (3,):
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    return float(np.dot(position, normal))


def slice_order(datasets: Sequence[Any]) -> list[int]:
    """The order in which to show the slices of one series: indices into ``datasets``.

    By the position of each image along the normal of its orientation
    (ImagePositionPatient · (row × column)); when any dataset lacks either, by
    InstanceNumber; when any lacks that too, the order given. Ties keep the order given.
    """
    keys = [slice_position(ds) for ds in datasets]
    if all(key is not None for key in keys):
        return sorted(range(len(datasets)), key=lambda i: (keys[i], i))
    numbers: list[int | None] = []
    for ds in datasets:
        try:
            numbers.append(int(ds.InstanceNumber))
        except (AttributeError, TypeError, ValueError):
            numbers.append(None)
    if all(n is not None for n in numbers):
        return sorted(range(len(datasets)), key=lambda i: (numbers[i], i))
    return list(range(len(datasets)))


def stack_volume(paths: Sequence[InstanceRecord | str], modality_lut: bool = True) -> np.ndarray:
    """Read ``paths`` (one series) and stack them into a volume.

    Slices are sorted by the position of each image along the normal of its orientation
    (ImagePositionPatient · (row × column)); when a file lacks either, by InstanceNumber,
    then by file order. A single multi-frame instance gives its frames. Returns an array
    of shape ``(slices, rows, columns)`` (plus a trailing samples axis for colour), also for
    a series of one single-frame image.
    """
    if not paths:
        raise InputError("the series has no instances in the catalog")
    slices = [read_pixels(path, modality_lut) for path in paths]
    order = slice_order([ds for ds, _ in slices])
    frames = []
    for i in order:
        ds, pixels = slices[i]
        single_frame = int(ds.get("NumberOfFrames", 1) or 1) == 1
        frames.append(pixels[np.newaxis] if single_frame else pixels)
    shapes = {f.shape[1:] for f in frames}
    if len(shapes) > 1:
        raise InputError(f"the images of this series differ in size ({sorted(shapes)}): "
                         "load them one by one")
    return np.concatenate(frames, axis=0)


# -- Volume ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D grid of voxels in patient space: the pixels of a series and where they are.

    The array is indexed ``[slice, row, column]``. Patient coordinates are DICOM's (LPS:
    x towards the patient's left, y towards the back, z towards the head), in mm.

    Attributes
    ----------
    array : numpy.ndarray
        ``(slices, rows, columns)``, in slice order (increasing position along ``normal``).
        With the Modality LUT applied (Hounsfield units for CT; Gy for RT Dose), stored in
        the smallest type that holds the values exactly (int16, int32) or float32.
    origin : numpy.ndarray
        Patient position (mm) of the centre of voxel ``[0, 0, 0]``: the first slice's
        ImagePositionPatient.
    row_direction : numpy.ndarray
        Unit vector along a row, towards increasing column index (ImageOrientationPatient[:3]).
    column_direction : numpy.ndarray
        Unit vector along a column, towards increasing row index (ImageOrientationPatient[3:]).
    slice_direction : numpy.ndarray
        Unit vector from one slice to the next, from the positions. Equal to ``normal``
        unless the stack is sheared (a gantry tilt).
    spacing : tuple of float
        mm between voxel centres along each array axis, in order: between slices (the median
        gap of the positions, not SliceThickness; along ``slice_direction``), between rows
        (PixelSpacing[0]) and between columns (PixelSpacing[1]).
    positions : numpy.ndarray
        Each slice's position along ``normal`` (mm).
    reference : pydicom.Dataset or None
        The header (no pixel data) of one slice (the first given): window, description, patient.
    sop_instance_uids : tuple of str
        The instance of each slice, in slice order (one UID for a multi-frame instance).
    notes : tuple of str
        What a reader should know: irregular gaps, a tilt, pixel spacing missing.
    """

    array: np.ndarray
    origin: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
    row_direction: np.ndarray = dataclasses.field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    column_direction: np.ndarray = dataclasses.field(default_factory=lambda: np.array([0.0, 1.0, 0.0]))
    slice_direction: np.ndarray | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    positions: np.ndarray | None = None
    reference: Any = None
    sop_instance_uids: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a volume's array has 3 axes (slice, row, column), not {self.array.ndim}")
        for name in ("origin", "row_direction", "column_direction"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=float).reshape(3))
        direction = self.normal if self.slice_direction is None else \
            np.asarray(self.slice_direction, dtype=float).reshape(3)
        direction = direction / np.linalg.norm(direction)
        object.__setattr__(self, "slice_direction", direction)
        if self.positions is None:
            start = float(np.dot(self.origin, self.normal))
            step = self.spacing[0] * float(np.dot(direction, self.normal))
            object.__setattr__(self, "positions", start + step * np.arange(self.array.shape[0]))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, rows, columns)``."""
        return self.array.shape[0], self.array.shape[1], self.array.shape[2]

    @property
    def normal(self) -> np.ndarray:
        """The unit normal of the slices: ``row_direction × column_direction``."""
        normal = np.cross(self.row_direction, self.column_direction)
        return np.asarray(normal / np.linalg.norm(normal))

    @property
    def regular(self) -> bool:
        """Whether the slices are evenly spaced (within 2% of the median gap)."""
        assert self.positions is not None
        gaps = np.diff(self.positions)
        if gaps.size == 0:
            return True
        median = float(np.median(gaps))
        return bool(np.all(np.abs(gaps - median) <= _SPACING_TOLERANCE * abs(median)))

    @property
    def axis_directions(self) -> np.ndarray:
        """``(3, 3)``: the unit patient direction of each array axis (slice, row, column), one a row."""
        assert self.slice_direction is not None
        return np.stack([self.slice_direction, self.column_direction, self.row_direction])

    @property
    def affine(self) -> np.ndarray:
        """The 4×4 matrix from voxel index ``(slice, row, column, 1)`` to patient ``(x, y, z, 1)`` in mm."""
        matrix = np.eye(4)
        matrix[:3, :3] = (self.axis_directions * np.asarray(self.spacing)[:, np.newaxis]).T
        matrix[:3, 3] = self.origin
        return matrix

    def voxel_to_patient(self, index: Iterable[float]) -> np.ndarray:
        """The patient position (mm) of the voxel ``(slice, row, column)`` (fractions allowed)."""
        point = np.append(np.asarray(list(index), dtype=float), 1.0)
        return np.asarray(self.affine @ point)[:3]

    def patient_to_voxel(self, point: Iterable[float]) -> np.ndarray:
        """The voxel index ``(slice, row, column)`` (as floats) of a patient position (mm)."""
        position = np.append(np.asarray(list(point), dtype=float), 1.0)
        return np.asarray(np.linalg.solve(self.affine, position))[:3]

    def default_window(self) -> tuple[float, float]:
        """``(centre, width)``: the file's first window, else the 1st to 99th percentile of the values."""
        ds = self.reference
        if ds is not None and "WindowCenter" in ds and "WindowWidth" in ds:
            try:
                centre, width = (float(v[0] if _multi(v) else v) for v in (ds.WindowCenter, ds.WindowWidth))
            except (TypeError, ValueError, IndexError):
                pass
            else:
                if width > 0:
                    return centre, width
        sample = self.array[:: max(1, self.shape[0] // 16)].ravel()[::7]
        low, high = (float(v) for v in np.percentile(sample, (1, 99))) if sample.size else (0.0, 1.0)
        return (low + high) / 2, max(high - low, 1e-6)

    def __repr__(self) -> str:
        s = ", ".join(f"{v:.4g}" for v in self.spacing)
        return f"<Volume {self.shape} {self.array.dtype} spacing ({s}) mm>"


def _multi(value: Any) -> bool:
    return not isinstance(value, (str, bytes)) and isinstance(value, Sequence)


def _volume_from_processes(sources: Sequence[Any], first: Any, modality_lut: bool) -> Volume | None:
    """Decode and rescale the slices in dicomnb's worker processes, straight into the memory of
    the volume's array (a file in ``/dev/shm`` mapped by all; unlinked once they are done).

    None when the processes cannot be used for it: no room for the block, or a slice that
    does not fit it (another size, a type or rescale unlike the first's); the caller then
    reads the slices here.
    """
    import mmap

    from dicomnb.core.parallel import map_batches

    stored = stored_dtype(first)
    assert stored is not None
    dtype = guessed_dtype(stored, *rescale_of(first, modality_lut), modality_lut)
    shape = (len(sources), int(first.Rows), int(first.Columns))
    size = max(1, math.prod(shape) * dtype.itemsize)
    folder = shared_folder(size)
    if folder is None:
        return None
    # named after us, so that a leftover would be told apart
    block = os.path.join(folder, f"dicomnb-volume-{uuid.uuid4().hex[:16]}")
    descriptor = os.open(block, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.ftruncate(descriptor, size)
            mapped = mmap.mmap(descriptor, size)
        finally:
            os.close(descriptor)
        slots = guessed_slots(sources)
        items = [(slot, plain_file(source)) for slot, source in zip(slots, sources, strict=True)]
        batches = [(block, shape, dtype.str, modality_lut, items[i:i + _BATCH]) for i in range(0, len(items), _BATCH)]
        headers: list[SliceHeader | None] = [None] * len(sources)
        try:
            for done in map_batches(decode_into, batches):
                for slot, header in done:
                    headers[slot] = header
        except SlotMismatch:
            return None
    finally:
        os.unlink(block)  # the mapping lives on, as long as the array that holds it
    in_slots = [h for h in headers if h is not None]
    if modality_lut and dtype == stored != np.int16 and any((h.slope, h.intercept) != (1, 0) for h in in_slots):
        return None  # the first slice had no rescale, others have: the type is value_dtype's to pick
    _check_same(in_slots, [h.shape for h in in_slots])
    order = slice_order(in_slots)
    array = in_order(np.frombuffer(mapped, dtype=dtype).reshape(shape), order)
    return Volume(array=array, reference=first, **_geometry([in_slots[i] for i in order], "the series"))


def _volume_from_files(sources: Sequence[Any], first: Any, modality_lut: bool) -> Volume | None:
    """Uncompressed slices read in two passes: the headers (the pixel data left in the file),
    then, in slice order, each slice's values straight from its file into the volume's array
    (``readinto``: no bytes object, no intermediate array), rescaled in place.

    A copy fewer than decoding each file and stacking: on a machine whose memory moves 512 kB
    in 0.3 ms, the copies are what takes the time. None when some slice is not that plain
    (the caller reads them the general way).
    """
    plan = plain_native(first)
    paths = [plain_file(s) for s in sources]
    if plan is None or None in paths or (modality_lut and "ModalityLUTSequence" in first):
        return None
    stored = plan[0]
    headers: list[SliceHeader] = []
    places: list[tuple[bytes | int, int]] = []
    for path in paths:
        assert path is not None
        ds = dcmread(path, defer_size=DEFER_BYTES)
        element = ds.get_item(0x7FE00010, keep_deferred=True) if "PixelData" in ds else None
        mine = plain_native(ds)
        if element is None or mine is None or mine[0] != stored or (modality_lut and "ModalityLUTSequence" in ds):
            return None
        header = header_of(ds, path, modality_lut)
        value = element.value  # None: left in the file (deferred); bytes: small enough to be read
        length = len(value) if isinstance(value, bytes) else getattr(element, "length", 0)
        if length < math.prod(header.shape) * stored.itemsize or (value is None and not hasattr(element, "value_tell")):
            return None
        headers.append(header)
        places.append((value if value is not None else element.value_tell, mine[1]))
    _check_same(headers, [h.shape for h in headers])
    order = slice_order(headers)
    sorted_headers = [headers[i] for i in order]
    geometry = _geometry(sorted_headers, "the series")
    rescales = [(h.slope, h.intercept) for h in sorted_headers]
    if not modality_lut or all(r == (1.0, 0.0) for r in rescales):
        dtype = stored
    elif all(float(a).is_integer() and float(b).is_integer() for a, b in rescales):
        dtype = np.dtype(np.int16)  # as value_dtype picks when every slice fits; checked below
    else:
        dtype = np.dtype(np.float32)
    array = np.empty((len(sources), *sorted_headers[0].shape), dtype=dtype)
    scratch = None if dtype == stored else np.empty(sorted_headers[0].shape, dtype=stored)
    for k, i in enumerate(order):
        target: np.ndarray = array[k] if scratch is None else scratch
        place, unused = places[i]
        if isinstance(place, bytes):
            target[...] = np.frombuffer(place, dtype=stored, count=target.size).reshape(target.shape)
        else:
            with open(headers[i].where, "rb", buffering=0) as file:
                file.seek(place)
                got = file.readinto(target.data.cast("B"))
            if got != target.nbytes:
                raise UnreadableFileError(f"{headers[i].where}: the pixel data is cut short ({got} of "
                                          f"{target.nbytes} bytes)")
        if unused:
            np.left_shift(target, unused, out=target)
            np.right_shift(target, unused, out=target)
        slope, intercept = rescales[k]
        if not fits(dtype, target, slope, intercept):
            return None  # wider than int16: value_dtype picks the type
        rescale_into(array[k], target, slope, intercept)
    return Volume(array=array, reference=first, **geometry)


def _read_here(sources: Sequence[Any], modality_lut: bool, threads: int,
               done: dict[int, tuple[SliceHeader, np.ndarray]] | None = None
               ) -> tuple[list[SliceHeader], list[np.ndarray]]:
    """Read and decode every source here (``done``: those already read, by index)."""
    done = done or {}

    def read(index: int) -> tuple[SliceHeader, np.ndarray]:
        return done[index] if index in done else read_slice(sources[index], modality_lut)

    if threads > 1:
        with ThreadPoolExecutor(threads, thread_name_prefix="dicomnb-volume") as pool:
            read_all = list(pool.map(read, range(len(sources))))
    else:
        read_all = [read(index) for index in range(len(sources))]
    return [h for h, _ in read_all], [p for _, p in read_all]


#: What the worker processes cost, as measured on 2 cores: starting them (about a second,
#: most of it importing numpy and pydicom), a call when they run, and fresh shared pages
#: (0.8 ms of CPU a MB, 0.4 ms of wall time with two); and how much faster two decode than one.
_POOL_START_S = 1.0
_POOL_CALL_S = 0.01
_SHARED_PAGES_S_PER_MB = 0.0004
_SPEEDUP = 1.7


def _choose(strategy: Strategy, sources: Sequence[Any], first: Any, modality_lut: bool
            ) -> tuple[Strategy, dict[int, tuple[SliceHeader, np.ndarray]]]:
    """The way to read the slices, and those read to decide (by index)."""
    if strategy != "auto":
        return strategy, {}
    if len(sources) < _PARALLEL_MIN or settings.workers <= 1 or os.name == "nt" or plain_native(first) is not None:
        return "serial", {}  # uncompressed: reading is copying, which a second core does not speed up
    # Only files the worker processes can open by themselves (an archive's password lives in
    # this process); threads do not pay (pydicom's parsing and its decoders hold the GIL).
    plain_files = all(plain_file(s) is not None for s in sources)
    if not plain_files or stored_dtype(first) is None or "ModalityLUTSequence" in first:
        return "serial", {}
    # How long does a slice take? The second one is timed (the first pays for importing the
    # decoder): 1 ms (RLE) is worth the processes only when they run, 20 ms (JPEG 2000) always.
    probed = {0: read_slice(sources[0], modality_lut)}
    start = time.perf_counter()
    probed[1] = read_slice(sources[1], modality_lut)
    here = (time.perf_counter() - start) * (len(sources) - 2)
    megabytes = len(sources) * int(first.Rows) * int(first.Columns) * 2 / 2**20  # int16 values, mostly
    there = (here / _SPEEDUP + _SHARED_PAGES_S_PER_MB * megabytes
             + (_POOL_CALL_S if pool_running() else _POOL_START_S))
    return ("processes" if there < here else "serial"), probed


def load_volume(sources: Any, *, modality_lut: bool = True, strategy: Strategy = "auto") -> Volume:
    """Read a series (or one multi-frame instance) as a :class:`Volume`.

    Parameters
    ----------
    sources : sequence of InstanceRecord, str, os.PathLike or pydicom.Dataset, or one of them
        The instances of one series (catalog records, paths or datasets), in any order; or one
        multi-frame instance whose frames carry positions (enhanced CT/MR/PET with plane
        positions per frame, RT Dose with a Grid Frame Offset Vector).
    modality_lut : bool
        Apply RescaleSlope/RescaleIntercept (or the Modality LUT Sequence; DoseGridScaling
        for RT Dose).
    strategy : {"auto", "serial", "threads", "processes"}
        How to read: ``"auto"`` picks for the data (see the module's docstring); the others
        force one way (``"serial"``: here, one slice after the other; ``"threads"``: a
        thread per core; ``"processes"``: dicomnb's worker processes), for comparisons.

    Raises
    ------
    NotAVolume
        The images are not one grid (see :class:`NotAVolume`); the message says why.
    DecoderMissing, UnreadableFileError, InputError
        A slice cannot be read or decoded, or has no pixel data.
    """
    if isinstance(sources, (str, os.PathLike)) or not isinstance(sources, Sequence) or is_dataset(sources):
        sources = [sources]
    if not sources:
        raise InputError("the series has no instances in the catalog")
    sources = [os.fspath(s) if isinstance(s, os.PathLike) else s for s in sources]
    first = open_source(sources[0], stop_before_pixels=True)
    if len(sources) == 1:
        if int(first.get("NumberOfFrames", 1) or 1) > 1:
            return _multiframe_volume(sources[0], modality_lut)
        raise NotAVolume(f"{where_of(sources[0])} is one image, not a volume: show it as an image")
    if int(first.get("SamplesPerPixel", 1) or 1) != 1:
        raise NotAVolume("the images are in colour: a volume is one value per voxel")
    chosen, probed = _choose(strategy, sources, first, modality_lut)
    volume = None
    if chosen == "processes" and stored_dtype(first) is not None:
        volume = _volume_from_processes(sources, first, modality_lut)
    elif chosen == "serial":
        volume = _volume_from_files(sources, first, modality_lut)
    if volume is not None:
        return volume
    headers, pixels = _read_here(sources, modality_lut, settings.workers if chosen == "threads" else 1, probed)
    return _assemble(headers, pixels, first, modality_lut)


# -- From headers and decoded slices to a Volume --------------------------------------------
def _check_same(headers: Sequence[SliceHeader], shapes: Sequence[tuple[int, ...]]) -> None:
    if any(h.frames > 1 for h in headers):
        raise NotAVolume("the series holds multi-frame instances among others: open them one by one")
    if len(set(shapes)) > 1:
        raise NotAVolume(f"the images differ in size ({sorted(set(shapes))}): it is not one volume")
    if any(len(s) != 2 for s in shapes) or any(h.samples != 1 for h in headers):
        raise NotAVolume("the images are in colour: a volume is one value per voxel")
    missing = [h.where for h in headers if h.ImagePositionPatient is None or h.ImageOrientationPatient is None]
    if missing:
        raise NotAVolume(f"{len(missing)} of the images carry no ImagePositionPatient or "
                         f"ImageOrientationPatient (the first: {missing[0]}): their place in space is unknown")
    orientations = np.array([h.ImageOrientationPatient for h in headers], dtype=float)
    if np.abs(orientations - orientations[0]).max() > _ORIENTATION_TOLERANCE:
        count = len({tuple(np.round(o, 3)) for o in orientations})
        raise NotAVolume(f"the images have {count} different orientations (a localizer among the slices, "
                         "or several stacks): it is not one volume; show it as a stack")


def _assemble(headers: list[SliceHeader], pixels: Sequence[np.ndarray] | np.ndarray, reference: Any,
              modality_lut: bool, *, frames_of: str | None = None) -> Volume:
    """Sort the slices, check they make one grid, stack the values with their rescale."""
    if frames_of is None:
        _check_same(headers, [p.shape for p in pixels])
    order = slice_order(headers)
    sorted_headers = [headers[i] for i in order]
    geometry = _geometry(sorted_headers, frames_of or "the series")  # before the stacking: fail early
    array = stack([pixels[i] for i in order], [(h.slope, h.intercept) for h in sorted_headers], modality_lut)
    return Volume(array=array, reference=reference, **geometry)


def _geometry(sorted_headers: list[SliceHeader], what: str) -> dict[str, Any]:
    """The geometry of slices in order (origin, directions, spacing, positions, notes)."""
    first = sorted_headers[0]
    assert first.ImageOrientationPatient is not None and first.ImagePositionPatient is not None
    iop = np.asarray(first.ImageOrientationPatient, dtype=float)
    row_direction = iop[:3] / np.linalg.norm(iop[:3])
    column_direction = iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(row_direction, column_direction)
    normal /= np.linalg.norm(normal)
    points = np.array([h.ImagePositionPatient for h in sorted_headers], dtype=float)
    positions = points @ normal
    gaps = np.diff(positions)
    if np.any(gaps < _SAME_POSITION_MM):
        at = float(positions[1:][gaps < _SAME_POSITION_MM][0])
        raise NotAVolume(f"{what} has two images at the same position ({at:.2f} mm along the normal): it holds "
                         "more than one volume (echoes, phases or time points); show it as a stack")
    slice_spacing = float(np.median(gaps))
    notes = []
    if np.any(np.abs(gaps - slice_spacing) > _SPACING_TOLERANCE * slice_spacing):
        notes.append(f"the gaps between slices are not regular ({gaps.min():.3g} to {gaps.max():.3g} mm); "
                     f"reformats place the slices {slice_spacing:.3g} mm apart")
    step = (points[-1] - points[0]) / (len(points) - 1)
    slice_direction = step / np.linalg.norm(step)
    tilt = math.degrees(math.acos(min(1.0, abs(float(np.dot(slice_direction, normal))))))
    if tilt > 0.5:
        notes.append(f"the slices are sheared by {tilt:.1f}° (a gantry tilt); reformats are shown unsheared")
    if first.pixel_spacing is None:
        notes.append("the images carry no PixelSpacing: 1 mm assumed")
    row_spacing, column_spacing = first.pixel_spacing or (1.0, 1.0)
    return {
        "origin": points[0],
        "row_direction": row_direction,
        "column_direction": column_direction,
        "slice_direction": slice_direction,
        # along slice_direction: the gap along the normal, lengthened by a tilt
        "spacing": (slice_spacing / float(np.dot(slice_direction, normal)), row_spacing, column_spacing),
        "positions": positions,
        "sop_instance_uids": tuple(dict.fromkeys(h.sop_instance_uid for h in sorted_headers)),
        "notes": tuple(notes),
    }


# -- One multi-frame instance -----------------------------------------------------------------
def _multiframe_volume(source: InstanceRecord | str, modality_lut: bool) -> Volume:
    where = where_of(source)
    ds = open_source(source)
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise NotAVolume(f"{where} is in colour: a volume is one value per voxel")
    pixels = decode(ds, where)
    pixels = modality_lut_applied(ds, pixels, modality_lut)
    count = pixels.shape[0]
    headers = _frame_headers(ds, where, count, modality_lut)
    reference = open_source(source, stop_before_pixels=True)
    return _assemble(headers, pixels, reference, modality_lut, frames_of=f"{where} ({count} frames)")


def _frame_headers(ds: Any, where: str, count: int, modality_lut: bool) -> list[SliceHeader]:
    """A header per frame: from the functional groups (enhanced objects) or the Grid Frame
    Offset Vector (RT Dose)."""
    base = header_of(ds, where, modality_lut)
    if "ModalityLUTSequence" in ds and modality_lut:
        base.slope, base.intercept = 1.0, 0.0
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared_item = shared[0] if shared else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) == count:
        headers = []
        for index, item in enumerate(per_frame):
            def group(name: str, attribute: str, frame: Any = item) -> Any:
                # A functional group of the frame, else the shared one.
                for holder in (frame, shared_item):
                    sequence = holder.get(name) if holder is not None else None
                    if sequence and attribute in sequence[0]:
                        return sequence[0].get(attribute)
                return None

            spacing = floats(group("PixelMeasuresSequence", "PixelSpacing"), 2)
            slope, intercept = base.slope, base.intercept
            if modality_lut and "ModalityLUTSequence" not in ds:
                found_slope = group("PixelValueTransformationSequence", "RescaleSlope")
                found_intercept = group("PixelValueTransformationSequence", "RescaleIntercept")
                if found_slope is not None or found_intercept is not None:
                    slope = float(found_slope if found_slope is not None else 1)
                    intercept = float(found_intercept if found_intercept is not None else 0)
            headers.append(dataclasses.replace(
                base,
                ImagePositionPatient=floats(group("PlanePositionSequence", "ImagePositionPatient"), 3),
                ImageOrientationPatient=floats(group("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
                InstanceNumber=index + 1,
                pixel_spacing=(spacing[0], spacing[1]) if spacing else base.pixel_spacing,
                slope=slope, intercept=intercept, frames=1,
            ))
    elif "GridFrameOffsetVector" in ds and base.ImagePositionPatient and base.ImageOrientationPatient:
        offsets = floats(ds.GridFrameOffsetVector, count)
        if offsets is None:
            raise NotAVolume(f"{where}: its Grid Frame Offset Vector does not give one offset per frame")
        iop = np.asarray(base.ImageOrientationPatient)
        normal = np.cross(iop[:3], iop[3:])
        origin = np.asarray(base.ImagePositionPatient)
        # Offsets are relative to the first frame when the first is 0, else absolute along the
        # normal; either way, each frame lies at (offset - first offset) from the first frame.
        headers = [dataclasses.replace(base, ImagePositionPatient=tuple(origin + (o - offsets[0]) * normal),
                                       InstanceNumber=k + 1, frames=1)
                   for k, o in enumerate(offsets)]
    else:
        raise NotAVolume(f"{where} has {count} frames without a position each (a cine loop or a "
                         "multi-frame image): show it as a stack")
    missing = sum(h.ImagePositionPatient is None or h.ImageOrientationPatient is None for h in headers)
    if missing:
        raise NotAVolume(f"{where}: {missing} of its {count} frames carry no plane position or orientation")
    orientations = np.array([h.ImageOrientationPatient for h in headers], dtype=float)
    if np.abs(orientations - orientations[0]).max() > _ORIENTATION_TOLERANCE:
        raise NotAVolume(f"{where}: its frames have different orientations: it is not one volume")
    return headers
