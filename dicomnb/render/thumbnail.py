"""A series' representative frame, as a small PNG (the explorer's thumbnails) or a figure.

The frame is the middle instance's (the middle frame of a multi-frame instance), shown as
:mod:`dicomnb.render.pixels` shows any frame: Modality LUT, the file's first VOI LUT or
window (else min/max), MONOCHROME1 inverted, colour converted, overlays drawn, pixels
made square. It is decoded once per series: the frame and each thumbnail size are kept,
and made again only when the series' middle instance changes (a new import).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from dicomnb.core.errors import DicomnbError

__all__ = ["display_frame", "forget_thumbnails", "series_figure", "thumbnail_png"]

LOGGER = logging.getLogger(__name__)

#: Series whose full-size frame is kept (a figure after a thumbnail decodes nothing again).
_FRAMES_KEPT = 8
#: Thumbnails kept (a few kB each).
_THUMBNAILS_KEPT = 4096

_lock = threading.Lock()
_frames: OrderedDict[str, tuple[tuple[Any, ...], np.ndarray]] = OrderedDict()
_thumbnails: OrderedDict[tuple[str, int], tuple[tuple[Any, ...], bytes | None]] = OrderedDict()


def forget_thumbnails() -> None:
    """Drop every kept frame and thumbnail."""
    with _lock:
        _frames.clear()
        _thumbnails.clear()


def _middle(series_uid: str) -> tuple[Any, tuple[Any, ...]]:
    from dicomnb.api import catalog

    records = catalog.series_records(series_uid)
    record = records[len(records) // 2]
    return record, (record.SOPInstanceUID, record.path, record.member, len(records))


def _keep(cache: OrderedDict[Any, Any], key: Any, value: Any, bound: int) -> None:
    with _lock:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > bound:
            cache.popitem(last=False)


def _frame(series_uid: str) -> np.ndarray:
    """The series' representative frame as display values (uint8), decoded once."""
    from dicomnb.core.volume import read_dataset
    from dicomnb.render.pixels import display_array, frame_count

    record, identity = _middle(series_uid)
    with _lock:
        kept = _frames.get(series_uid)
    if kept is not None and kept[0] == identity:
        return kept[1]
    ds = read_dataset(record)
    frame = display_array(ds, frame_count(ds) // 2, where=identity[1])
    _keep(_frames, series_uid, (identity, frame), _FRAMES_KEPT)
    return frame


def display_frame(series_uid: str) -> np.ndarray:
    """The series' representative frame, values 0..1: ``(rows, columns)`` or ``(rows, columns, 3)``.

    Raises
    ------
    InputError
        No such series in the catalog, or its instance has no pixel data.
    DecoderMissing, UnreadableFileError
        Its pixel data cannot be decoded.
    """
    return _frame(series_uid) / 255.0


def _shrink(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` at most ``size`` pixels on its longer side, each pixel the mean of its block."""
    step = max(1, int(np.ceil(max(image.shape[:2]) / size)))
    if step == 1:
        return image
    rows, columns = (image.shape[0] // step) * step, (image.shape[1] // step) * step
    if rows == 0 or columns == 0:  # a long thin image: keep every step-th pixel instead
        return image[::step, ::step]
    blocks = image[:rows, :columns].reshape(rows // step, step, columns // step, step, *image.shape[2:])
    return (blocks.mean(axis=(1, 3)) + 0.5).astype(np.uint8)


def thumbnail_png(series_uid: str, size: int = 64) -> bytes | None:
    """A PNG of at most ``size`` × ``size`` pixels of the series' frame; None when it has no pixels.

    Kept per series and size: asking again costs a catalog look-up, not a decode.
    """
    from dicomnb.render.pixels import encode_png

    try:
        _, identity = _middle(series_uid)
    except DicomnbError as exc:
        LOGGER.info("no thumbnail for series %s: %s", series_uid, exc)
        return None
    with _lock:
        kept = _thumbnails.get((series_uid, size))
    if kept is not None and kept[0] == identity:
        return kept[1]
    try:
        png: bytes | None = encode_png(_shrink(_frame(series_uid), size))
    except DicomnbError as exc:
        LOGGER.info("no thumbnail for series %s: %s", series_uid, exc)
        png = None
    _keep(_thumbnails, (series_uid, size), (identity, png), _THUMBNAILS_KEPT)
    return png


def series_figure(series_uid: str, *, title: str | None = None) -> Any:
    """A matplotlib figure of the series' frame (the view "Open after import" shows)."""
    from matplotlib.figure import Figure

    from dicomnb.api import catalog

    frame = _frame(series_uid)
    records = catalog.series_records(series_uid)
    figure = Figure(figsize=(4, 4))
    axes = figure.add_subplot()
    axes.imshow(frame, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes.set_axis_off()
    first = records[0]
    count = f"({len(records)} instance{'s' if len(records) != 1 else ''})"
    axes.set_title(title or " ".join(str(w) for w in (first.Modality, first.SeriesDescription, count) if w), fontsize=9)
    figure.tight_layout()
    return figure
