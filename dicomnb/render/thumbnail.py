"""A series' representative frame, as a small PNG (the explorer's thumbnails) or a figure.

The frame is the middle instance's (the middle frame of a multi-frame instance), with its
modality LUT and its first VOI LUT or window applied, else stretched between the 0.5th and
99.5th percentiles; MONOCHROME1 is inverted so that it reads as on a viewer. Colour
images are shown as they are.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

import numpy as np

from dicomnb.core.errors import DicomnbError

__all__ = ["display_frame", "series_figure", "thumbnail_png"]

LOGGER = logging.getLogger(__name__)


def _scaled(values: np.ndarray) -> np.ndarray:
    low, high = np.percentile(values, (0.5, 99.5)) if values.size else (0.0, 1.0)
    if high <= low:
        high = low + 1
    return np.clip((values - low) / (high - low), 0, 1)


def display_frame(series_uid: str) -> np.ndarray:
    """The series' representative frame, values 0..1: ``(rows, columns)`` or ``(rows, columns, 3)``.

    Raises
    ------
    InputError
        No such series in the catalog.
    DecoderMissing, UnreadableFileError
        Its pixel data cannot be decoded.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    from dicomnb.api import catalog

    records = catalog.series_records(series_uid)
    record = records[len(records) // 2]
    ds = catalog.dataset(record.SOPInstanceUID)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pixels = ds.pixel_array
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames > 1:
        pixels = pixels[frames // 2]
    if samples > 1:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        return _scaled(pixels.astype(np.float64)) if pixels.dtype != np.uint8 else pixels / 255.0
    values = apply_modality_lut(pixels, ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            windowed = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
        shown = _scaled(windowed) if windowed.max() > windowed.min() else _scaled(np.asarray(values, np.float64))
    else:
        shown = _scaled(np.asarray(values, dtype=np.float64))
    return 1.0 - shown if photometric == "MONOCHROME1" else shown


def thumbnail_png(series_uid: str, size: int = 64) -> bytes | None:
    """A PNG of at most ``size`` × ``size`` pixels of the series' frame; None when it has no pixels."""
    import matplotlib.image as mpimg

    try:
        frame = display_frame(series_uid)
    except (DicomnbError, AttributeError, ValueError, TypeError, NotImplementedError, RuntimeError) as exc:
        LOGGER.info("no thumbnail for series %s: %s", series_uid, exc)
        return None
    step = max(1, int(np.ceil(max(frame.shape[:2]) / size)))
    small = frame[::step, ::step]
    out = io.BytesIO()
    mpimg.imsave(out, small, cmap="gray", vmin=0, vmax=1, format="png")
    return out.getvalue()


def series_figure(series_uid: str, *, title: str | None = None) -> Any:
    """A matplotlib figure of the series' frame (the view "Open after import" shows)."""
    import matplotlib.pyplot as plt

    from dicomnb.api import catalog

    frame = display_frame(series_uid)
    records = catalog.series_records(series_uid)
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.imshow(frame, cmap="gray", vmin=0, vmax=1)
    axes.set_axis_off()
    first = records[0]
    axes.set_title(title or f"{first.Modality or ''} {first.SeriesDescription or ''} ({len(records)} instances)".strip(),
                   fontsize=9)
    figure.tight_layout()
    plt.close(figure)  # shown by whoever displays it, not by pyplot's own machinery
    return figure
