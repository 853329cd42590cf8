"""The display pipeline of one frame: from stored pixel values to the 8-bit image a person sees.

::

    stored values ─ decode ─► Modality LUT ─► VOI (window or VOI LUT) ─► MONOCHROME1 inverted
        (rescale or table)    (LINEAR, LINEAR_EXACT, SIGMOID)
    colour: RGB, YBR_* (converted while decoding), PALETTE COLOR ─► 8-bit RGB
    then: overlays (60xx) drawn ─► pixels made square (PixelSpacing, ImagerPixelSpacing,
          PixelAspectRatio) ─► PNG

Every step is a function on numpy arrays so that it can be checked against pydicom's own
:func:`~pydicom.pixels.apply_modality_lut` and :func:`~pydicom.pixels.apply_voi_lut`. The
attributes of one frame of an enhanced multi-frame object (rescale, window, spacing from its
shared and per-frame functional groups) are read through :func:`frame_dataset`, so that
every frame is shown with its own values.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dicomnb.core.errors import DecoderMissing, DicomnbError, InputError, UnreadableFileError
from dicomnb.core.slices import CODECS_HINT

__all__ = [
    "CODECS_HINT",
    "CT_PRESETS",
    "FrameInfo",
    "Overlay",
    "Window",
    "apply_window",
    "color_rgb",
    "decode",
    "default_window",
    "display_array",
    "encode_png",
    "frame_count",
    "frame_dataset",
    "frame_info",
    "frame_rate",
    "modality_values",
    "render",
    "square_pixels",
    "voi_display",
    "window_presets",
]

LOGGER = logging.getLogger(__name__)


_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_GROUPS_TAGS = (0x52009229, 0x52009230)  # Shared, PerFrame Functional Groups Sequence
_MAX_STRETCH = 8.0  # a square-pixel correction larger than this is a broken header, not a pixel shape
_OVERLAY_COLOUR = np.array([255, 255, 0], dtype=np.uint8)  # yellow reads on black and on white


_QUIET_LOCK = threading.RLock()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """pydicom's warnings silenced (invalid values, decoder notes): the viewer says what matters.

    ``warnings.catch_warnings`` saves and restores process-wide state; the lock keeps the
    prefetch thread and the kernel's thread from restoring each other's.
    """
    with _QUIET_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@dataclass(frozen=True)
class Window:
    """One VOI setting: a window (centre, width, function) or one of the file's VOI LUTs.

    Attributes
    ----------
    name : str
        What a person picks it by ("WINDOW1", "Lung", "Min/max").
    center, width : float
        The window, in the units of the Modality LUT's output (Hounsfield units for CT). For
        a VOI LUT, the range of values the table covers.
    function : str
        ``"LINEAR"``, ``"LINEAR_EXACT"`` or ``"SIGMOID"`` (VOILUTFunction).
    explanation : str
        Where it comes from or what it is for (WindowCenterWidthExplanation, LUTExplanation).
    lut : int or None
        When set, the index of the item of the VOI LUT Sequence to apply instead of a window.
    """

    name: str
    center: float
    width: float
    function: str = "LINEAR"
    explanation: str = ""
    lut: int | None = None

    @property
    def label(self) -> str:
        """The text of a presets menu entry."""
        if self.lut is not None:
            return f"{self.name} (VOI LUT)"
        return f"{self.name} (C {self.center:g}, W {self.width:g})"


#: Windows for CT in Hounsfield units, offered with the file's own.
CT_PRESETS: dict[str, Window] = {
    "lung": Window("Lung", -600, 1500, explanation="CT preset: lung parenchyma"),
    "bone": Window("Bone", 400, 1800, explanation="CT preset: bone"),
    "brain": Window("Brain", 40, 80, explanation="CT preset: brain"),
    "abdomen": Window("Abdomen", 50, 400, explanation="CT preset: abdominal soft tissue"),
}


@dataclass(frozen=True)
class Overlay:
    """One overlay plane of a frame: a mask and where its first pixel lands in the image."""

    row: int
    column: int
    mask: np.ndarray  # bool, (rows, columns) of the overlay


@dataclass(frozen=True)
class FrameInfo:
    """What displaying one frame needs, read once from its header.

    Attributes
    ----------
    header : pydicom.dataset.Dataset
        The frame's attributes (:func:`frame_dataset`): pydicom's LUT functions read it.
    photometric : str
        PhotometricInterpretation of the stored values.
    samples : int
        SamplesPerPixel.
    bits_stored : int
        BitsStored (for colour images of more than 8 bits).
    slope, intercept : float or None
        The rescale of the Modality LUT, when there is one.
    modality_lut : bool
        True when a Modality LUT Sequence (a table) replaces the rescale.
    windows : tuple of Window
        The file's own VOI settings: its VOI LUTs first, then its windows.
    aspect : float
        Height over width of one pixel (1.0 for square pixels).
    spacing : tuple of float or None
        (row, column) spacing in mm, when the header gives it.
    modality : str
        Modality, to offer the CT presets.
    overlays : tuple of Overlay
        The overlay planes that apply to this frame.
    """

    header: Any
    photometric: str
    samples: int
    bits_stored: int
    slope: float | None
    intercept: float | None
    modality_lut: bool
    windows: tuple[Window, ...]
    aspect: float
    spacing: tuple[float, float] | None
    modality: str
    overlays: tuple[Overlay, ...]

    @property
    def monochrome(self) -> bool:
        """True for greyscale images (the ones a window applies to)."""
        return self.samples == 1 and self.photometric in ("MONOCHROME1", "MONOCHROME2")


# -- reading a frame's attributes -------------------------------------------------------------

def frame_count(ds: Any, *, where: str = "") -> int:
    """NumberOfFrames of ``ds`` (1 when absent or empty).

    Raises
    ------
    UnreadableFileError
        The value is not a whole number (``"1A"``).
    """
    with quiet():
        value = ds.get("NumberOfFrames", 1)
    try:
        count = int(value if value not in (None, "") else 1)
    except (TypeError, ValueError) as exc:
        raise UnreadableFileError(f"{where or 'the dataset'}: NumberOfFrames {value!r} is not a number") from exc
    return max(count, 1)


def frame_dataset(ds: Any, frame: int = 0) -> Any:
    """The attributes of one frame: ``ds`` with its functional groups folded in.

    An enhanced multi-frame object keeps rescale, window, pixel spacing and position of each
    frame in its Shared and Per-frame Functional Groups Sequences; the result carries them as
    plain top-level attributes (per-frame values over shared ones over the top level), so
    that any code reading ``RescaleSlope`` or ``WindowCenter`` reads the frame's. Without
    functional groups ``ds`` itself is returned. Pixel data is left out of the copy.
    """
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if not shared and not per_frame:
        return ds
    from pydicom.dataset import Dataset

    flat = Dataset()
    for element in ds:
        if element.tag not in _PIXEL_TAGS and element.tag not in _GROUPS_TAGS:
            flat.add(element)
    if hasattr(ds, "file_meta"):
        flat.file_meta = ds.file_meta
    if ds.original_encoding[0] is not None:
        flat.set_original_encoding(*ds.original_encoding)
    groups = [shared[0]] if shared else []
    if 0 <= frame < len(per_frame):
        groups.append(per_frame[frame])
    for group in groups:
        for macro in group:  # PixelMeasuresSequence, FrameVOILUTSequence, ...
            if macro.VR == "SQ" and macro.value:
                for element in macro.value[0]:
                    flat.add(element)
    return flat


def _floats(value: Any) -> list[float]:
    if value is None or value == "":
        return []
    values = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else value
    out = []
    for item in values:
        try:
            number = float(item)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out.append(number)
    return out


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


def _aspect(header: Any) -> tuple[float, tuple[float, float] | None]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = _floats(header.get(keyword))
        if len(spacing) == 2 and spacing[0] > 0 and spacing[1] > 0:
            return spacing[0] / spacing[1], (spacing[0], spacing[1])
    ratio = _floats(header.get("PixelAspectRatio"))
    if len(ratio) == 2 and ratio[0] > 0 and ratio[1] > 0:
        return ratio[0] / ratio[1], None  # vertical : horizontal
    return 1.0, None


def _file_windows(header: Any) -> tuple[Window, ...]:
    windows: list[Window] = []
    function = str(header.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        LOGGER.info("VOILUTFunction %r is not defined by the standard: shown as LINEAR", function)
        function = "LINEAR"
    for index, item in enumerate(header.get("VOILUTSequence") or []):
        descriptor = _floats(item.get("LUTDescriptor"))
        if len(descriptor) != 3 or "LUTData" not in item:
            continue
        entries = descriptor[0] or 65536.0
        name = str(item.get("LUTExplanation", "") or f"VOI LUT {index + 1}")
        windows.append(Window(name, descriptor[1] + entries / 2, entries, "LINEAR",
                              explanation=str(item.get("LUTExplanation", "") or ""), lut=index))
    centers = _floats(header.get("WindowCenter"))
    widths = _floats(header.get("WindowWidth"))
    explanations = _strings(header.get("WindowCenterWidthExplanation"))
    for index, (center, width) in enumerate(zip(centers, widths, strict=False)):
        if width < (1 if function == "LINEAR" else 0) or width == 0:
            LOGGER.info("window %d of the file has width %g: left out", index + 1, width)
            continue
        explanation = explanations[index] if index < len(explanations) else ""
        name = explanation or ("File window" if len(centers) == 1 else f"File window {index + 1}")
        windows.append(Window(name, center, width, function, explanation=explanation))
    return tuple(windows)


def _value(header: Any, tag: int) -> Any:
    return header[tag].value if tag in header else None


def _overlays(header: Any, frame: int) -> tuple[Overlay, ...]:
    overlays = []
    for group in range(0x6000, 0x6020, 2):
        if (group << 16 | 0x3000) not in header:
            continue
        try:
            planes = np.asarray(header.overlay_array(group), dtype=bool)
            origin = _floats(_value(header, group << 16 | 0x0050)) or [1, 1]
            first = int(_value(header, group << 16 | 0x0051) or 1)  # ImageFrameOrigin, 1-based
        except (AttributeError, KeyError, TypeError, ValueError, NotImplementedError) as exc:
            LOGGER.info("overlay group %04X cannot be read: %s", group, exc)
            continue
        if planes.ndim == 3:
            index = frame - (first - 1)
            if not 0 <= index < planes.shape[0]:
                continue
            mask = planes[index]
        elif frame != first - 1 and frame_count(header) > 1 and (group << 16 | 0x0015) in header:
            continue  # a one-frame overlay of a multi-frame image belongs to its origin frame
        else:
            mask = planes
        row, column = (int(origin[0]) - 1, int(origin[1]) - 1) if len(origin) == 2 else (0, 0)
        overlays.append(Overlay(row, column, mask))
    return tuple(overlays)


def frame_info(ds: Any, frame: int = 0) -> FrameInfo:
    """Read what displaying frame ``frame`` of ``ds`` needs (once; cheap to keep).

    ``ds`` may have been read without its pixel data (``stop_before_pixels``).

    Raises
    ------
    InputError
        The header does not describe an image (no Rows, Columns or BitsAllocated).
    """
    with quiet():
        return _frame_info(ds, frame)


def _frame_info(ds: Any, frame: int) -> FrameInfo:
    header = frame_dataset(ds, frame)
    missing = [k for k in ("Rows", "Columns") if k not in header]
    if missing or ("BitsAllocated" not in header and "PixelData" in header):
        absent = ", ".join(missing or ["BitsAllocated"])
        raise InputError(f"the image has pixel data without its description ({absent} missing): "
                         "it cannot be shown")
    photometric = str(header.get("PhotometricInterpretation", "") or "MONOCHROME2").strip().upper()
    samples = int(header.get("SamplesPerPixel", 1) or 1)
    slope = _floats(header.get("RescaleSlope"))
    intercept = _floats(header.get("RescaleIntercept"))
    has_rescale = bool(slope or intercept)
    aspect, spacing = _aspect(header)
    return FrameInfo(
        header=header,
        photometric=photometric,
        samples=samples,
        bits_stored=int(header.get("BitsStored", 0) or header.get("BitsAllocated", 8) or 8),
        slope=(slope[0] if slope else 1.0) if has_rescale else None,
        intercept=(intercept[0] if intercept else 0.0) if has_rescale else None,
        modality_lut=bool(header.get("ModalityLUTSequence")),
        windows=_file_windows(header) if samples == 1 else (),
        aspect=aspect,
        spacing=spacing,
        modality=str(header.get("Modality", "") or ""),
        overlays=_overlays(header, frame),
    )


def frame_rate(ds: Any) -> float:
    """Frames per second to play a multi-frame object at (10 when the file does not say).

    RecommendedDisplayFrameRate, else CineRate, else 1000 / FrameTime.
    """
    for keyword in ("RecommendedDisplayFrameRate", "CineRate"):
        rate = _floats(ds.get(keyword))
        if rate and rate[0] > 0:
            return rate[0]
    frame_time = _floats(ds.get("FrameTime"))
    if frame_time and frame_time[0] > 0:
        return 1000.0 / frame_time[0]
    return 10.0


# -- decoding -----------------------------------------------------------------------------------

def _transfer_syntax(ds: Any, where: str) -> Any:
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if syntax:
        return UID(str(syntax))
    # No file meta (a raw dataset): native pixel data is decoded with the encoding it was read with
    element = next((ds[k] for k in _PIXEL_KEYWORDS if k in ds), None)
    implicit, little = ds.original_encoding
    if element is None or element.is_undefined_length or little is None:
        raise UnreadableFileError(f"{where}: the file does not say how its pixel data is encoded "
                                  "(no Transfer Syntax UID)")
    if not little:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def decode(ds: Any, frame: int | None = None, *, where: str = "") -> tuple[np.ndarray, str]:
    """Decode the pixel data of ``ds`` (one frame when ``frame`` is given).

    Colour data in YBR_FULL or YBR_FULL_422 comes out as RGB; the photometric
    interpretation returned is the one of the array.

    Returns
    -------
    tuple of (numpy.ndarray, str)
        ``(rows, columns)`` or ``(rows, columns, samples)`` for one frame, with a leading
        frames axis for all frames of a multi-frame object; and its photometric
        interpretation.

    Raises
    ------
    InputError
        ``ds`` has no pixel data.
    DecoderMissing
        No installed decoder handles its transfer syntax (the message names
        ``pip install 'dicomnb[codecs]'``).
    UnreadableFileError
        The pixel data cannot be decoded (corrupt, cut short, inconsistent header).
    """
    where = where or str(ds.get("SOPInstanceUID", "the dataset"))
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise InputError(f"{where} has no pixel data (SOP class {ds.get('SOPClassUID', '?')})")
    from pydicom.pixels import get_decoder
    from pydicom.pixels.utils import as_pixel_options

    syntax = _transfer_syntax(ds, where)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise DecoderMissing(f"{where}: pixel data in {syntax.name} ({syntax}) cannot be decoded: "
                             f"no decoder for it exists in pydicom; for the others, {CODECS_HINT}") from exc
    if not decoder.is_available:
        raise DecoderMissing(f"{where}: no installed decoder handles {syntax.name}; {CODECS_HINT}")
    count = frame_count(ds, where=where)
    if frame is not None and not 0 <= frame < count:
        raise InputError(f"{where} has {count} frame(s): there is no frame {frame + 1}")
    try:
        with quiet():
            options = as_pixel_options(ds)
            array, properties = decoder.as_array(ds, index=frame if count > 1 else None, **options)
    except DicomnbError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise anything; the user gets one error
        raise UnreadableFileError(f"cannot decode the pixel data of {where} ({syntax.name}): {exc}") from exc
    photometric = str(properties.get("photometric_interpretation", options.get("photometric_interpretation", "")))
    return array, photometric.strip().upper() or "MONOCHROME2"


# -- the steps ----------------------------------------------------------------------------------

def modality_values(pixels: np.ndarray, info: FrameInfo) -> np.ndarray:
    """Stored values through the Modality LUT: Hounsfield units for CT (float32).

    The Modality LUT Sequence when there is one, else RescaleSlope × value + RescaleIntercept,
    else the stored values as they are.
    """
    if info.modality_lut:
        from pydicom.pixels import apply_modality_lut

        try:
            return np.asarray(apply_modality_lut(pixels, info.header), dtype=np.float32)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"the Modality LUT of the image cannot be applied: {exc}") from exc
    values = np.asarray(pixels, dtype=np.float32)
    if info.slope is None or (info.slope == 1.0 and info.intercept == 0.0):
        return values
    return values * np.float32(info.slope) + np.float32(info.intercept or 0.0)


def apply_window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Window ``values`` into display values 0..255 (uint8), as PS3.3 C.11.2.1.2 defines.

    The result is pydicom's :func:`~pydicom.pixels.apply_windowing` output scaled from its
    output range to 0..255.

    Raises
    ------
    InputError
        A width the function does not accept (below 1 for LINEAR, not positive otherwise).
    """
    function = (function or "LINEAR").upper()
    values = np.asarray(values, dtype=np.float32)
    if function == "SIGMOID":
        if width <= 0:
            raise InputError(f"a SIGMOID window needs a width above 0, not {width:g}")
        exponent = np.float32(-4.0 / width) * (values - np.float32(center))
        np.clip(exponent, -60.0, 60.0, out=exponent)  # past ±60 the curve is flat at 0 or 1; exp would overflow
        scaled = 1.0 / (1.0 + np.exp(exponent))
        return (scaled * 255.0 + 0.5).astype(np.uint8)
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise InputError(f"a LINEAR_EXACT window needs a width above 0, not {width:g}")
        low, span = center - width / 2, width
    else:
        if width < 1:
            raise InputError(f"a LINEAR window needs a width of at least 1, not {width:g}")
        if width == 1:  # a threshold: at or below c - 0.5 is black, above is white
            return np.where(values > center - 0.5, 255, 0).astype(np.uint8)
        low, span = center - 0.5 - (width - 1) / 2, width - 1
    # one multiply-add and a clip: the hot path of every re-render
    scale = np.float32(255.0 / span)
    out = values * scale
    out -= np.float32(low * 255.0 / span - 0.5)
    np.clip(out, 0.0, 255.0, out=out)
    return out.astype(np.uint8)


def _voi_table(values: np.ndarray, info: FrameInfo, index: int) -> np.ndarray:
    from pydicom.pixels import apply_voi

    item = info.header.VOILUTSequence[index]
    entries, first = int(item.LUTDescriptor[0]) or 65536, int(item.LUTDescriptor[1])
    try:
        # the whole table, through pydicom (it knows US from OW and the byte order)
        table = np.asarray(apply_voi(np.arange(first, first + entries), info.header, index), dtype=np.float64)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, NotImplementedError) as exc:
        raise InputError(f"the VOI LUT {index + 1} of the image cannot be applied: {exc}") from exc
    # Tables often declare 16 bits but hold 12: scale by the bits the entries use, as viewers do
    bits = min(int(item.LUTDescriptor[2]), max(int(table.max()).bit_length(), 1))
    display = (table * (255.0 / (2**bits - 1)) + 0.5).clip(0, 255).astype(np.uint8)
    positions = np.clip(np.rint(values).astype(np.int64) - first, 0, entries - 1)
    return display[positions]


def voi_display(values: np.ndarray, info: FrameInfo, window: Window) -> np.ndarray:
    """Modality values through ``window`` (or its VOI LUT) to 0..255, MONOCHROME1 inverted."""
    if window.lut is not None:
        shown = _voi_table(values, info, window.lut)
    else:
        shown = apply_window(values, window.center, window.width, window.function)
    if info.photometric == "MONOCHROME1":
        np.subtract(255, shown, out=shown)
    return shown


def color_rgb(pixels: np.ndarray, photometric: str, info: FrameInfo) -> np.ndarray:
    """A colour frame as 8-bit RGB ``(rows, columns, 3)``: palette looked up, deep samples scaled."""
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            rgb = np.asarray(apply_color_lut(pixels, info.header))
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"the palette of the image cannot be applied: {exc}") from exc
        return (rgb >> 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb.astype(np.uint8)
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        from pydicom.pixels import convert_color_space

        pixels = convert_color_space(pixels, photometric, "RGB")
    rgb = pixels[..., :3]
    if rgb.dtype == np.uint8:
        return rgb
    top = float(2 ** min(info.bits_stored, 8 * rgb.dtype.itemsize) - 1)
    return (rgb.astype(np.float32) * np.float32(255.0 / top) + 0.5).clip(0, 255).astype(np.uint8)


def draw_overlays(image: np.ndarray, overlays: Sequence[Overlay]) -> np.ndarray:
    """``image`` (greyscale or RGB, uint8) with the overlays' set bits drawn in yellow."""
    if not overlays:
        return image
    rgb = np.repeat(image[..., np.newaxis], 3, axis=2) if image.ndim == 2 else image.copy()
    rows, columns = rgb.shape[:2]
    for overlay in overlays:
        # the overlay may start above or left of the image (negative origin) or run off it
        top, left = max(overlay.row, 0), max(overlay.column, 0)
        bottom = min(overlay.row + overlay.mask.shape[0], rows)
        right = min(overlay.column + overlay.mask.shape[1], columns)
        if bottom <= top or right <= left:
            continue
        mask = overlay.mask[top - overlay.row:bottom - overlay.row, left - overlay.column:right - overlay.column]
        rgb[top:bottom, left:right][mask] = _OVERLAY_COLOUR
    return rgb


def square_pixels(image: np.ndarray, aspect: float) -> np.ndarray:
    """``image`` resampled (nearest neighbour) so that its pixels are square on screen.

    ``aspect`` is a pixel's height over its width: rows are repeated when it is above 1,
    columns when it is below, so that no stored pixel is dropped.
    """
    if not math.isfinite(aspect) or abs(aspect - 1.0) < 1e-3:
        return image
    aspect = min(max(aspect, 1 / _MAX_STRETCH), _MAX_STRETCH)
    rows, columns = image.shape[:2]
    if aspect > 1:
        size = round(rows * aspect)
        return image[(np.arange(size) * rows) // size]
    size = round(columns / aspect)
    return image[:, (np.arange(size) * columns) // size]


# -- presets and the whole pipeline ---------------------------------------------------------------

def _min_max(values: np.ndarray) -> Window:
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    return Window("Min/max", (low + high) / 2, max(high - low, 1e-6), "LINEAR_EXACT",
                  explanation="the frame's lowest value black, its highest white")


def window_presets(info: FrameInfo, values: np.ndarray) -> list[Window]:
    """The VOI settings to offer for a frame: the file's, min/max, and for CT lung, bone, brain, abdomen."""
    if not info.monochrome:
        return []
    presets = [*info.windows, _min_max(values)]
    if info.modality == "CT":
        presets.extend(CT_PRESETS.values())
    return presets


def default_window(info: FrameInfo, values: np.ndarray) -> Window:
    """The VOI setting a frame opens with: the file's first (a VOI LUT before a window, as
    pydicom's :func:`~pydicom.pixels.apply_voi_lut` does), else min/max."""
    return info.windows[0] if info.windows else _min_max(values)


def _as_window(window: Window | tuple[float, float] | str | None, info: FrameInfo, values: np.ndarray) -> Window:
    if window is None:
        return default_window(info, values)
    if isinstance(window, Window):
        return window
    if isinstance(window, str):
        for preset in window_presets(info, values):
            if window.lower() in (preset.name.lower(), preset.label.lower()):
                return preset
        preset_ct = CT_PRESETS.get(window.lower())
        if preset_ct is not None:
            return preset_ct
        names = ", ".join(p.name for p in window_presets(info, values))
        raise InputError(f"no window called {window!r} for this image; there are: {names}")
    center, width = window
    function = info.windows[0].function if info.windows and info.windows[0].lut is None else "LINEAR"
    return Window("Custom", float(center), float(width), function)


def render(pixels: np.ndarray, info: FrameInfo, window: Window | tuple[float, float] | str | None = None, *,
           photometric: str | None = None, overlays: bool = True, square: bool = True) -> np.ndarray:
    """One decoded frame as display values: uint8 ``(rows, columns)`` or ``(rows, columns, 3)``.

    Parameters
    ----------
    pixels : numpy.ndarray
        The decoded frame (:func:`decode`).
    info : FrameInfo
        Its attributes (:func:`frame_info`).
    window : Window, (center, width), str or None
        The VOI setting: a :class:`Window`, a centre and width (with the file's VOI LUT
        function), a preset's name (``"lung"``, ``"WINDOW1"``, ``"Min/max"``), or None for
        the file's first (:func:`default_window`). Ignored for colour images.
    photometric : str, optional
        The photometric interpretation of ``pixels`` when decoding changed it (YBR to RGB).
    overlays : bool
        Draw the overlay planes (in yellow).
    square : bool
        Resample so that the pixels are square (pixel spacing or aspect ratio).
    """
    photometric = photometric or info.photometric
    if pixels.ndim == 3 or photometric == "PALETTE COLOR":
        image = color_rgb(pixels, photometric, info)
    else:
        values = modality_values(pixels, info)
        image = voi_display(values, info, _as_window(window, info, values))
    if overlays and info.overlays:
        image = draw_overlays(image, info.overlays)
    return square_pixels(image, info.aspect) if square else image


def display_array(ds: Any, frame: int = 0, window: Window | tuple[float, float] | str | None = None, *,
                  overlays: bool = True, square: bool = True, where: str = "") -> np.ndarray:
    """Decode frame ``frame`` of ``ds`` and return it as a person sees it (uint8 0..255).

    The whole pipeline in one call: see :func:`render` for ``window``, ``overlays`` and
    ``square``. Raises the errors of :func:`decode` and :func:`frame_info`.
    """
    count = frame_count(ds, where=where)
    if not 0 <= frame < count:
        raise InputError(f"{where or 'the image'} has {count} frame(s): there is no frame {frame + 1}")
    info = frame_info(ds, frame)
    pixels, photometric = decode(ds, frame if count > 1 else None, where=where)
    return render(pixels, info, window, photometric=photometric, overlays=overlays, square=square)


# -- PNG ------------------------------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, *, level: int = 1) -> bytes:
    """A PNG of an 8-bit greyscale ``(rows, columns)`` or RGB ``(rows, columns, 3)`` image.

    Written with zlib alone and the "Sub" row filter, which keeps a 512 × 512 slice to a few
    milliseconds (the cost of every re-render while a slider moves).
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 2:
        colour, channels = 0, 1
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        colour, channels = (2, 3) if image.shape[2] == 3 else (6, 4)
    else:
        raise ValueError(f"a PNG needs (rows, columns) or (rows, columns, 3|4), not {image.shape}")
    rows, columns = image.shape[:2]
    flat = image.reshape(rows, columns * channels)
    filtered = np.empty((rows, columns * channels + 1), dtype=np.uint8)
    filtered[:, 0] = 1  # filter type Sub: each byte minus the same channel of the pixel on its left
    filtered[:, 1:channels + 1] = flat[:, :channels]
    np.subtract(flat[:, channels:], flat[:, :-channels], out=filtered[:, channels + 1:])
    header = struct.pack(">IIBBBBB", columns, rows, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(filtered.tobytes(), level)) + _chunk(b"IEND", b""))
