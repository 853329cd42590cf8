"""2D images and stacks: one frame with window/level, or a series (or a multi-frame object) to scroll.

- :class:`ImageView` (kind ``"image"``): one frame, with window centre and width sliders
  and a presets menu (the file's windows and VOI LUTs, min/max, and lung, bone, brain,
  abdomen for CT).
- :class:`StackView` (kind ``"stack"``): the same controls, plus a slice slider over the
  slices of a series in the order :func:`~dicomnb.core.volume.slice_order` gives (frames of
  multi-frame objects in their own order), and a Play button (cine) at the file's frame
  rate for multi-frame objects.

Both render through :mod:`dicomnb.render.pixels`, one pipeline. Each frame is decoded once:
decoded frames are kept in a cache bounded in bytes (least recently used dropped first),
and while a person looks at one slice a background thread decodes its neighbours. A
re-render (a slider moved) is a window, an overlay and a PNG: a few milliseconds for a
512 × 512 CT slice. :meth:`StackView.render` and :meth:`StackView.png` are that call
without widgets, and :attr:`StackView.decoded` counts the decodes.
"""

from __future__ import annotations

import html
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from dicomnb.core.errors import DicomnbError, InputError
from dicomnb.render.base import View, png_html, view_html
from dicomnb.render.controls import WindowControls
from dicomnb.render.pixels import (
    FrameInfo,
    Window,
    decode,
    default_window,
    encode_png,
    frame_count,
    frame_dataset,
    frame_info,
    frame_rate,
    modality_values,
    quiet,
    render,
    window_presets,
)

__all__ = ["CACHE_BYTES", "FrameCache", "ImageView", "Slice", "StackView"]

LOGGER = logging.getLogger(__name__)

#: Bytes of decoded frames a view keeps by default (a 300-slice 512 × 512 CT takes 150 MB).
CACHE_BYTES = 512 * 2**20
#: Slices on each side of the one shown that are decoded ahead.
PREFETCH = 3
#: Multi-frame datasets kept read (their frames are decoded one at a time from them).
_DATASETS_KEPT = 2
#: Images narrower than this are shown enlarged (a 64 × 64 MR is unreadable at its size).
_MIN_SHOWN = 256


@dataclass(frozen=True)
class Slice:
    """One slice of a stack: a single-frame instance, or one frame of a multi-frame one.

    Attributes
    ----------
    source : int
        Index of the instance among the view's sources (as given).
    frame : int or None
        The frame of a multi-frame instance (0-based); None for a single-frame one.
    position : float or None
        Position along the slice normal in mm (ImagePositionPatient · normal).
    instance : int or None
        InstanceNumber.
    frames : int
        How many frames its instance has.
    """

    source: int
    frame: int | None
    position: float | None
    instance: int | None
    frames: int = 1

    @property
    def label(self) -> str:
        """What the slice slider shows beside its number."""
        parts = []
        if self.instance is not None:
            parts.append(f"instance {self.instance}")
        if self.frame is not None:
            parts.append(f"frame {self.frame + 1}/{self.frames}")
        if self.position is not None:
            parts.append(f"{self.position:.1f} mm")
        return " · ".join(parts)


class FrameCache:
    """Decoded frames by key, bounded in bytes: the least recently used go first.

    The newest frame is always kept, even when it alone is over the bound.
    """

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._frames: OrderedDict[Any, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> np.ndarray | None:
        """The frame under ``key`` (now the most recently used), or None."""
        with self._lock:
            frame = self._frames.get(key)
            if frame is not None:
                self._frames.move_to_end(key)
            return frame

    def put(self, key: Any, frame: np.ndarray) -> None:
        """Keep ``frame``, dropping the least recently used ones past the bound."""
        with self._lock:
            old = self._frames.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._frames[key] = frame
            self.nbytes += frame.nbytes
            while self.nbytes > self.max_bytes and len(self._frames) > 1:
                _, dropped = self._frames.popitem(last=False)
                self.nbytes -= dropped.nbytes

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._frames

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


def _sources(sources: Any) -> list[Any]:
    from pydicom.dataset import Dataset

    from dicomnb.core.model import InstanceRecord

    if isinstance(sources, (str, os.PathLike, Dataset, InstanceRecord)):
        return [sources]
    return list(sources)


def _where(source: Any) -> str:
    from pydicom.dataset import Dataset

    if isinstance(source, Dataset):
        return str(getattr(source, "filename", "") or source.get("SOPInstanceUID", "a dataset"))
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"{source.path}::{source.member}" if source.member else str(source.path)


def _read(source: Any, *, header_only: bool) -> Any:
    from dicomnb.core.volume import read_dataset

    return read_dataset(source, stop_before_pixels=header_only)


def _instance_number(ds: Any) -> int | None:
    try:
        return int(ds.InstanceNumber)
    except (AttributeError, TypeError, ValueError):
        return None


class _FrameViewer(View):
    """What :class:`ImageView` and :class:`StackView` share: slices, the decode cache, window/level."""

    def __init__(self, sources: Any, *, title: str = "", frame: int | None = None,
                 cache_bytes: int = CACHE_BYTES, prefetch: int = PREFETCH) -> None:
        super().__init__(title)
        self.sources = _sources(sources)
        if not self.sources:
            raise InputError("nothing to show: no instances given")
        #: Files left out because their header cannot be read (one message each).
        self.skipped: list[str] = []
        self.headers: dict[int, Any] = {}
        errors: list[DicomnbError] = []
        for index, source in enumerate(self.sources):
            try:
                with quiet():
                    header = _read(source, header_only=True)
                    is_image = "Rows" in header and "Columns" in header
            except DicomnbError as exc:
                errors.append(exc)
                self.skipped.append(str(exc))
                continue
            if is_image:
                self.headers[index] = header
            else:
                self.skipped.append(f"{_where(source)} is not an image: it has no Rows and Columns "
                                    f"(SOP class {header.get('SOPClassUID', 'not given: is the file cut short?')})")
                errors.append(InputError(self.skipped[-1]))
        if not self.headers:
            raise errors[0] if len(errors) == 1 else InputError(
                "none of the instances given can be shown: " + "; ".join(map(str, errors[:3])))
        self.slices = self._slices(frame)
        self.cache = FrameCache(cache_bytes)
        self.prefetch = prefetch
        #: How many frames were decoded (each frame once while it stays in the cache).
        self.decoded = 0
        self.index = len(self.slices) // 2
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, int | None], Future[np.ndarray]] = {}
        self._infos: dict[int, FrameInfo] = {}
        self._photometrics: dict[int, str] = {}  # of the decoded arrays (YBR comes out as RGB)
        self._datasets: OrderedDict[int, Any] = OrderedDict()
        self._dataset_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._window: Window | None = None
        self._presets: list[Window] | None = None
        self.title = title or self._default_title()

    # -- slices -----------------------------------------------------------------------------------
    def _slices(self, only_frame: int | None) -> list[Slice]:
        from dicomnb.core.volume import slice_order, slice_position

        indices = list(self.headers)
        slices = []
        for position in slice_order([self.headers[i] for i in indices]):
            source = indices[position]
            header = self.headers[source]
            count = frame_count(header, where=_where(self.sources[source]))
            number = _instance_number(header)
            if count == 1:
                if only_frame not in (None, 0):
                    raise InputError(f"{_where(self.sources[source])} has 1 frame: there is no frame {only_frame + 1}")
                slices.append(Slice(source, None, slice_position(header), number))
                continue
            frames = range(count) if only_frame is None else [only_frame]
            for frame in frames:
                if not 0 <= frame < count:
                    raise InputError(f"{_where(self.sources[source])} has {count} frames: there is no frame {frame + 1}")
                with quiet():
                    where = slice_position(frame_dataset(header, frame))
                slices.append(Slice(source, frame, where, number, count))
        return slices

    def __len__(self) -> int:
        return len(self.slices)

    def _default_title(self) -> str:
        header = self.headers[self.slices[0].source]
        with quiet():
            words = [str(header.get(k, "") or "") for k in ("Modality", "SeriesDescription")]
        text = " ".join(w for w in words if w)
        if self.kind != "stack":
            return text
        count = len(self.slices)
        unit = "frames" if len(self.headers) == 1 and count > 1 else "slices" if count > 1 else "slice"
        return f"{text} ({count} {unit})".strip()

    # -- decoding, with the cache and the neighbours decoded ahead --------------------------------
    def _dataset(self, source: int) -> Any:
        """The full dataset of a source; multi-frame ones are kept for their next frames."""
        with self._dataset_lock:
            ds = self._datasets.get(source)
            if ds is not None:
                self._datasets.move_to_end(source)
                return ds
            ds = _read(self.sources[source], header_only=False)
            if frame_count(ds) > 1:
                self._datasets[source] = ds
                while len(self._datasets) > _DATASETS_KEPT:
                    self._datasets.popitem(last=False)
            return ds

    def pixels(self, index: int) -> tuple[np.ndarray, str]:
        """The decoded frame of slice ``index`` and its photometric interpretation (decoded once)."""
        piece = self.slices[index]
        key = (piece.source, piece.frame)
        cached = self.cache.get(key)
        if cached is None:
            with self._lock:
                cached = self.cache.get(key)
                future = self._pending.get(key)
                owner = cached is None and future is None
                if owner:
                    future = self._pending[key] = Future()
            if cached is None:
                assert future is not None
                if not owner:
                    cached = future.result()
                else:
                    cached = self._decode_into_cache(key, future)
        return cached, self._photometric(piece.source)

    def _decode_into_cache(self, key: tuple[int, int | None], future: Future[np.ndarray]) -> np.ndarray:
        source, frame = key
        try:
            ds = self._dataset(source)
            array, photometric = decode(ds, frame, where=_where(self.sources[source]))
        except BaseException as exc:
            with self._lock:
                self._pending.pop(key, None)
            future.set_exception(exc)
            raise
        self._photometrics[source] = photometric
        self.cache.put(key, array)  # in the cache before it leaves the pending: never decoded twice
        with self._lock:
            self._pending.pop(key, None)
            self.decoded += 1
        future.set_result(array)
        return array

    def _photometric(self, source: int) -> str:
        return self._photometrics.get(source) or self.info(self._index_of(source)).photometric

    def _index_of(self, source: int) -> int:
        return next(i for i, s in enumerate(self.slices) if s.source == source)

    def _prefetch_around(self, index: int) -> None:
        if self.prefetch <= 0 or len(self.slices) == 1:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dicomnb-prefetch")
        for step in range(1, self.prefetch + 1):
            for near in (index + step, index - step):
                if 0 <= near < len(self.slices):
                    piece = self.slices[near]
                    key = (piece.source, piece.frame)
                    if key not in self.cache and key not in self._pending:
                        self._executor.submit(self._prefetch_one, near)

    def _prefetch_one(self, index: int) -> None:
        if abs(index - self.index) > 2 * self.prefetch:
            return  # the person scrolled away: this one is no longer a neighbour
        try:
            self.pixels(index)
        except Exception as exc:  # noqa: BLE001 - shown when that slice is shown, not from here
            LOGGER.info("slice %d was not decoded ahead: %s", index, exc)

    def close(self) -> None:
        """Stop decoding ahead (the view still renders, decoding on demand)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    # -- rendering --------------------------------------------------------------------------------
    def info(self, index: int) -> FrameInfo:
        """The display attributes of slice ``index`` (read once)."""
        info = self._infos.get(index)
        if info is None:
            piece = self.slices[index]
            info = self._infos[index] = frame_info(self.headers[piece.source], piece.frame or 0)
        return info

    def values(self, index: int) -> np.ndarray:
        """Slice ``index`` through its Modality LUT (Hounsfield units for CT); colour as decoded."""
        pixels, _ = self.pixels(index)
        info = self.info(index)
        return modality_values(pixels, info) if pixels.ndim == 2 else pixels

    def presets(self, index: int | None = None) -> list[Window]:
        """The windows offered for slice ``index`` (default: the one the view opened on)."""
        if index is None:
            if self._presets is None:
                self._presets = self.presets(len(self.slices) // 2)
            return self._presets
        info = self.info(index)
        return window_presets(info, self.values(index)) if info.monochrome else []

    @property
    def window(self) -> Window | None:
        """The window applied (None for colour images); set it to change every render after."""
        if self._window is None:
            middle = len(self.slices) // 2
            info = self.info(middle)
            if info.windows:  # the file's: known without decoding anything
                self._window = info.windows[0]
            elif info.monochrome:
                self._window = default_window(info, self.values(middle))
        return self._window

    @window.setter
    def window(self, value: Window | tuple[float, float] | str) -> None:
        if isinstance(value, Window):
            self._window = value
        elif isinstance(value, str):
            found = [p for p in self.presets() if value.lower() in (p.name.lower(), p.label.lower())]
            if not found:
                from dicomnb.render.pixels import CT_PRESETS

                if value.lower() not in CT_PRESETS:
                    names = ", ".join(p.name for p in self.presets())
                    raise InputError(f"no window called {value!r} for this image; there are: {names}")
                found = [CT_PRESETS[value.lower()]]
            self._window = found[0]
        else:
            self._window = self._custom(*value)

    def _custom(self, center: float, width: float) -> Window:
        base = self.window
        function = base.function if base is not None and base.lut is None else "LINEAR"
        return Window("Custom", float(center), float(width), function)

    def render(self, index: int | None = None, center: float | None = None, width: float | None = None, *,
               window: Window | tuple[float, float] | str | None = None, ahead: bool = True) -> np.ndarray:
        """Slice ``index`` (default: the current one) as display values, uint8.

        The window is ``center``/``width`` when given, else ``window``, else the view's
        :attr:`window`. With ``ahead``, the neighbours of the slice are decoded in the
        background, for the next scroll.

        Raises
        ------
        DecoderMissing, UnreadableFileError, InputError
            The slice cannot be decoded or displayed.
        """
        index = self.index if index is None else index
        if not 0 <= index < len(self.slices):
            raise InputError(f"there is no slice {index}: this view has {len(self.slices)} (0 to {len(self.slices) - 1})")
        self.index = index
        pixels, photometric = self.pixels(index)
        if ahead:
            self._prefetch_around(index)
        if center is not None and width is not None:
            chosen: Window | tuple[float, float] | str | None = self._custom(center, width)
        else:
            chosen = window if window is not None else self.window
        return render(pixels, self.info(index), chosen, photometric=photometric)

    def png(self, index: int | None = None, center: float | None = None, width: float | None = None, *,
            window: Window | tuple[float, float] | str | None = None) -> bytes:
        """:meth:`render` as PNG bytes."""
        return encode_png(self.render(index, center, width, window=window))

    # -- static HTML ----------------------------------------------------------------------------
    def caption(self, index: int | None = None) -> str:
        """One line: which slice, and the window."""
        index = self.index if index is None else index
        piece = self.slices[index]
        parts = []
        if len(self.slices) > 1:
            parts.append(f"slice {index + 1}/{len(self.slices)}")
        if piece.label:
            parts.append(piece.label)
        window = self.window if self.info(index).monochrome else None
        if window is not None:
            parts.append(window.label)
        return " · ".join(parts)

    def html(self) -> str:
        """The current slice as an embedded PNG with its caption (no kernel needed)."""
        try:
            image = self.render(ahead=False)  # a static page does not scroll
        except DicomnbError as exc:
            return view_html(self.kind, self.title, error=exc)
        shown = _MIN_SHOWN if image.shape[1] < _MIN_SHOWN else None
        notes = "".join(f"<div class='dicomnb-note'>Left out: {html.escape(text)}</div>" for text in self.skipped[:5])
        return view_html(self.kind, self.title, f"{png_html(encode_png(image), alt=self.caption(), width=shown)}"
                                                f"<div>{html.escape(self.caption())}</div>{notes}")

    # -- widgets ----------------------------------------------------------------------------------
    def build_widget(self) -> Any:
        import ipywidgets as widgets

        return _Controls(self, widgets).box


class _Controls:
    """The widgets of a view: the image, window/level, presets, and for stacks the slice slider."""

    def __init__(self, view: _FrameViewer, widgets: Any) -> None:
        self.view = view
        self.syncing = False
        self.image = widgets.Image(format="png")
        self.image.add_class("dicomnb-view-image")
        self.status = widgets.HTML()
        self.caption = widgets.Label()
        rows: list[Any] = [widgets.HTML(f"<b>{html.escape(view.title)}</b>") if view.title else None, self.image]
        self.slider: Any = None
        self.play: Any = None
        count = len(view.slices)
        if count > 1:
            self.slider = widgets.IntSlider(value=view.index, min=0, max=count - 1, description="Slice",
                                            continuous_update=True, readout=False,
                                            layout=widgets.Layout(width="60%"))
            self.slider.add_class("dicomnb-slice")
            controls = [self.slider]
            if any(s.frames > 1 for s in view.slices):
                rate = frame_rate(view.headers[view.slices[0].source])
                self.play = widgets.Play(value=view.index, min=0, max=count - 1, interval=max(int(1000 / rate), 10),
                                         description="Cine", tooltip=f"play at {rate:g} frames/s")
                self.play.add_class("dicomnb-cine")
                widgets.link((self.play, "value"), (self.slider, "value"))
                controls.insert(0, self.play)
            rows.append(widgets.HBox([*controls, self.caption]))
            self.slider.observe(self._on_slice, names="value")
        else:
            rows.append(self.caption)
        self.window: WindowControls | None = None
        if view.window is not None:
            presets = view.presets()
            values = view.values(view.index)
            # the centre reaches every value of the slice and every preset's whole range
            low, high = float(np.min(values)), float(np.max(values))
            for preset in presets:
                low, high = min(low, preset.center - preset.width / 2), max(high, preset.center + preset.width / 2)
            self.window = WindowControls(widgets, presets, low, high, max([high - low, *(p.width for p in presets)]),
                                         view.window, self._apply)
            rows.append(self.window.box)
        if view.skipped:
            self.status.value = "".join(f"<div>Left out: {html.escape(t)}</div>" for t in view.skipped[:5])
        rows.append(self.status)
        self.box = widgets.VBox([row for row in rows if row is not None])
        self.box.add_class(f"dicomnb-{view.kind}")
        self.draw()

    def _apply(self, window: Window | tuple[float, float]) -> Window:
        self.view.window = window
        self.draw()
        shown = self.view.window
        assert shown is not None  # set just now
        return shown

    def _on_slice(self, change: dict[str, Any]) -> None:
        self.view.index = change["new"]
        self.draw()

    def draw(self) -> None:
        """Render the current slice into the image (errors go to the status line, not a traceback)."""
        view = self.view
        try:
            image = view.render(view.index)
        except DicomnbError as exc:
            self.status.value = f"<span class='dicomnb-error'>{html.escape(str(exc))}</span>"
            return
        self.image.value = encode_png(image)
        if image.shape[1] < _MIN_SHOWN:
            self.image.width = _MIN_SHOWN
        self.caption.value = view.caption()
        if self.status.value.startswith("<span class='dicomnb-error'>"):
            self.status.value = ""


class ImageView(_FrameViewer):
    """One frame with window/level: an instance, or one frame of a multi-frame instance.

    Parameters
    ----------
    source : InstanceRecord, str, os.PathLike or pydicom.dataset.Dataset
        The instance: a record of the catalog, a file's path, or a dataset.
    frame : int
        The frame to show (0-based) of a multi-frame instance.
    title : str
        The line above the image (default: modality and series description).

    Raises
    ------
    InputError, UnreadableFileError
        The source is no image, or cannot be read.
    """

    kind = "image"

    def __init__(self, source: Any, frame: int = 0, *, title: str = "") -> None:
        super().__init__([source], title=title, frame=frame, prefetch=0)


class StackView(_FrameViewer):
    """The slices of a series, or the frames of a multi-frame instance, to scroll and play.

    Parameters
    ----------
    sources : sequence of InstanceRecord, str, os.PathLike or Dataset, or one of them
        The instances of one series (any order: they are sorted by
        :func:`~dicomnb.core.volume.slice_order`), or one multi-frame instance.
    title : str
        The line above the image (default: modality, series description, slice count).
    cache_bytes : int
        Bytes of decoded frames kept (default :data:`CACHE_BYTES`).
    prefetch : int
        Slices on each side of the shown one decoded ahead in a background thread.

    Attributes
    ----------
    slices : list of Slice
        The slices in display order.
    decoded : int
        How many frames were decoded so far.
    skipped : list of str
        Instances left out (unreadable, or not images), with the reason.
    """

    kind = "stack"

    def __init__(self, sources: Any, *, title: str = "", cache_bytes: int = CACHE_BYTES,
                 prefetch: int = PREFETCH) -> None:
        super().__init__(sources, title=title, cache_bytes=cache_bytes, prefetch=prefetch)

