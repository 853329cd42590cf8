"""Pixel data of a series as one numpy volume, sorted along the slice normal."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dicomnb.core.archive import in_archive, read_instance
from dicomnb.core.errors import DecoderMissing, DicomnbError, InputError, UnreadableFileError

if TYPE_CHECKING:
    from dicomnb.core.model import InstanceRecord

__all__ = ["read_dataset", "read_pixels", "slice_order", "stack_volume"]

_EXTRA_HINT = (
    "install a decoder for it: pip install 'dicomnb[codecs]' "
    "(pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle)"
)


def _where(record: InstanceRecord | str) -> str:
    if isinstance(record, str):
        return record
    return f"{record.path}::{record.member}" if in_archive(record) else record.path


def read_dataset(record: InstanceRecord | str, *, stop_before_pixels: bool = False) -> Any:
    """The pydicom dataset of an instance (a record of the catalog, or a file's path).

    Raises
    ------
    UnreadableFileError
        pydicom cannot read it.
    """
    import pydicom

    where = _where(record)
    try:
        source = record if isinstance(record, str) else read_instance(record)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # force: the catalog holds datasets written without preamble too (the scanner read them)
            return pydicom.dcmread(source, stop_before_pixels=stop_before_pixels, force=True)
    except DicomnbError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types
        raise UnreadableFileError(f"cannot read {where}: {exc}") from exc


def read_pixels(record: InstanceRecord | str, modality_lut: bool = True) -> tuple[Any, np.ndarray]:
    """Return ``(dataset, pixels)`` of one instance; rescaled with its Modality LUT if asked."""
    from pydicom.pixels import apply_modality_lut

    path = _where(record)
    ds = read_dataset(record)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError(f"{path} has no pixel data (SOP class {ds.get('SOPClassUID', '?')})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except (RuntimeError, NotImplementedError) as exc:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", syntax)
        raise DecoderMissing(f"{path}: no installed decoder handles {name}; {_EXTRA_HINT}") from exc
    except Exception as exc:  # noqa: BLE001
        raise UnreadableFileError(f"cannot decode the pixel data of {path}: {exc}") from exc
    if modality_lut and ("RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds):
        pixels = apply_modality_lut(pixels, ds)
    return ds, pixels


def _position_key(ds: Any) -> float | None:
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
    keys = [_position_key(ds) for ds in datasets]
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
