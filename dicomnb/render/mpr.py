"""MPR: axial, coronal and sagittal reformats of a volume, with a linked crosshair.

A :class:`~dicomnb.core.volume.Volume` is a grid ``[slice, row, column]`` in patient space.
Each of the three planes is cut across the volume axis closest to its normal (for an axial
acquisition: axial across the slices, coronal across the rows, sagittal across the
columns; the assignment is the one that fits the three best, so sagittal and coronal
acquisitions and oblique ones get theirs too). The cut is turned and flipped so that it
reads as on a radiological viewer:

============  ==================  ==================
plane         screen right        screen down
============  ==================  ==================
axial         patient's left (L)  posterior (P)
coronal       patient's left (L)  feet (F)
sagittal      posterior (P)       feet (F)
============  ==================  ==================

The side labels come from the actual directions (an oblique axis gets two letters, the
larger first). Pixels are made square from the spacing of the two axes shown, so a coronal
cut of 1.25 mm slices of 0.98 mm pixels is stretched vertically by 1.28.

The crosshair is one point, a voxel ``(slice, row, column)``; each plane shows the cut
through it and two lines where the other two planes cross it, in their colours. Moving
the point in one plane (:meth:`MprView.move`, :meth:`MprView.click`) moves the others.
"""

from __future__ import annotations

import html
import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dicomnb.core.errors import DicomnbError, InputError
from dicomnb.core.volume import Volume, load_volume
from dicomnb.render.base import View, png_html, view_html
from dicomnb.render.controls import WindowControls
from dicomnb.render.pixels import (
    CT_PRESETS,
    FrameInfo,
    Window,
    apply_window,
    encode_png,
    frame_info,
    square_pixels,
    voi_display,
)

__all__ = ["PLANES", "MprView", "PlaneLayout", "Reformat", "crosshair", "layout", "plane_axes", "reformat"]

#: The three planes, in the order they are shown.
PLANES = ("axial", "coronal", "sagittal")

#: Per plane: the patient axis (0 x, 1 y, 2 z) of its normal; the patient axis and sign
#: pointing to the screen's right; and to the screen's bottom.
_ORIENTATION = {
    "axial": (2, (0, 1), (1, 1)),
    "coronal": (1, (0, 1), (2, -1)),
    "sagittal": (0, (1, 1), (2, -1)),
}
#: Letters of the patient directions (DICOM LPS): +x left, +y posterior, +z head.
_LETTERS = (("R", "L"), ("A", "P"), ("F", "H"))
#: A direction's second letter shows when its component is at least this (about 17°).
_OBLIQUE = 0.3
#: Colour of each plane: its border, and its lines on the other two planes.
COLOURS = {"axial": (230, 60, 60), "coronal": (60, 200, 90), "sagittal": (240, 200, 40)}
#: Planes are shown this wide at most, and at least (a 10 × 10 dose grid is unreadable at its size).
_SHOWN_WIDTH = 320
_MIN_SHOWN = 160


def _shown_width(columns: int) -> int:
    return max(min(_SHOWN_WIDTH, columns), _MIN_SHOWN)


def _label(direction: np.ndarray) -> str:
    """The patient-direction letters of a unit vector: ``"L"``, ``"LP"`` (oblique), ..."""
    order = np.argsort(-np.abs(direction))
    letters = [_LETTERS[axis][int(direction[axis] > 0)] for axis in order
               if axis == order[0] or abs(direction[axis]) >= _OBLIQUE]
    return "".join(letters)


def plane_axes(volume: Volume) -> dict[str, int]:
    """The volume axis (0 slice, 1 row, 2 column) each plane cuts across.

    The assignment of the three axes to the three planes that best fits their directions
    (largest sum of |cos| between each plane's normal and its axis).
    """
    directions = np.abs(volume.axis_directions)  # [axis, patient x/y/z]
    normals = [_ORIENTATION[p][0] for p in PLANES]
    best = max(itertools.permutations(range(3)),
               key=lambda axes: sum(directions[a, n] for a, n in zip(axes, normals, strict=True)))
    return dict(zip(PLANES, best, strict=True))


@dataclass(frozen=True)
class PlaneLayout:
    """How one plane of a volume is cut and laid on the screen.

    Attributes
    ----------
    plane : str
        ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    axis : int
        The volume axis the plane cuts across (its index picks the cut).
    vertical, horizontal : int
        The volume axes shown from top to bottom and from left to right.
    flip_vertical, flip_horizontal : bool
        Whether that axis runs backwards on screen.
    shape : tuple of int
        Displayed rows and columns of a cut (before the pixels are made square).
    spacing : tuple of float
        mm between displayed rows, between displayed columns.
    labels : dict
        The patient-direction letters on each side: keys ``"top"``, ``"bottom"``,
        ``"left"``, ``"right"``.
    """

    plane: str
    axis: int
    vertical: int
    horizontal: int
    flip_vertical: bool
    flip_horizontal: bool
    shape: tuple[int, int]
    spacing: tuple[float, float]
    labels: dict[str, str]

    @property
    def aspect(self) -> float:
        """Height over width of one displayed pixel."""
        return self.spacing[0] / self.spacing[1]

    def to_voxel(self, index: float, row: float, column: float) -> np.ndarray:
        """The voxel ``(slice, row, column)`` under displayed pixel ``(row, column)`` of cut ``index``."""
        rows, columns = self.shape
        voxel = np.zeros(3)
        voxel[self.axis] = index
        voxel[self.vertical] = rows - 1 - row if self.flip_vertical else row
        voxel[self.horizontal] = columns - 1 - column if self.flip_horizontal else column
        return voxel

    def from_voxel(self, voxel: Iterable[float]) -> tuple[float, float]:
        """Where a voxel ``(slice, row, column)`` lands on a cut: ``(row, column)`` displayed."""
        point = list(voxel)
        rows, columns = self.shape
        row, column = point[self.vertical], point[self.horizontal]
        return (rows - 1 - row if self.flip_vertical else row,
                columns - 1 - column if self.flip_horizontal else column)


def layout(volume: Volume, plane: str) -> PlaneLayout:
    """Where ``plane`` cuts ``volume`` and how the cut is turned to read as on a viewer."""
    if plane not in _ORIENTATION:
        raise InputError(f"no plane {plane!r}: the planes are {', '.join(PLANES)}")
    axes = plane_axes(volume)
    axis = axes[plane]
    directions = volume.axis_directions
    _, (right_axis, right_sign), (down_axis, down_sign) = _ORIENTATION[plane]
    shown = [a for a in range(3) if a != axis]
    # the in-plane axis closer to the screen's right goes across; the other goes down
    horizontal = max(shown, key=lambda a: abs(directions[a, right_axis]))
    vertical = shown[0] if shown[1] == horizontal else shown[1]
    flip_horizontal = bool(directions[horizontal, right_axis] * right_sign < 0)
    flip_vertical = bool(directions[vertical, down_axis] * down_sign < 0)
    right = directions[horizontal] * (-1 if flip_horizontal else 1)
    down = directions[vertical] * (-1 if flip_vertical else 1)
    return PlaneLayout(
        plane=plane, axis=axis, vertical=vertical, horizontal=horizontal,
        flip_vertical=flip_vertical, flip_horizontal=flip_horizontal,
        shape=(volume.shape[vertical], volume.shape[horizontal]),
        spacing=(volume.spacing[vertical], volume.spacing[horizontal]),
        labels={"right": _label(right), "left": _label(-right), "bottom": _label(down), "top": _label(-down)},
    )


@dataclass(frozen=True)
class Reformat:
    """One cut of a volume, as shown: ``pixels[row, column]`` from top left.

    Attributes
    ----------
    layout : PlaneLayout
        The plane's axes, flips, spacing and side labels.
    index : int
        Where it cuts: the index along ``layout.axis``.
    pixels : numpy.ndarray
        The volume's values of the cut (a view, not a copy), rows top to bottom.
    """

    layout: PlaneLayout
    index: int
    pixels: np.ndarray

    @property
    def plane(self) -> str:
        return self.layout.plane

    def to_voxel(self, row: float, column: float) -> np.ndarray:
        """The voxel ``(slice, row, column)`` under a displayed pixel (before squaring)."""
        return self.layout.to_voxel(self.index, row, column)

    def from_voxel(self, voxel: Iterable[float]) -> tuple[float, float]:
        """Where a voxel ``(slice, row, column)`` lands on this cut: ``(row, column)`` displayed."""
        return self.layout.from_voxel(voxel)


def reformat(volume: Volume, plane: str, index: int) -> Reformat:
    """The cut of ``volume`` in ``plane`` at ``index`` along the axis it cuts (see :func:`layout`).

    Raises
    ------
    InputError
        An unknown plane, or an index outside the volume.
    """
    place = layout(volume, plane)
    count = volume.shape[place.axis]
    if not 0 <= index < count:
        raise InputError(f"the {plane} plane has cuts 0 to {count - 1}, not {index}")
    cut = np.take(volume.array, index, axis=place.axis)
    # the remaining axes keep their order: transpose when the row axis is the one across
    remaining = [a for a in range(3) if a != place.axis]
    if remaining.index(place.vertical) == 1:
        cut = cut.T
    if place.flip_vertical:
        cut = cut[::-1]
    if place.flip_horizontal:
        cut = cut[:, ::-1]
    return Reformat(place, int(index), cut)


def crosshair(volume: Volume, voxel: Iterable[float]) -> dict[str, tuple[int, tuple[float, float]]]:
    """The linked crosshair: for each plane, the cut through ``voxel`` and where it lies in it.

    Returns
    -------
    dict
        ``{plane: (index, (row, column))}``: the cut's index along the plane's axis and the
        point's displayed ``(row, column)`` in that cut.
    """
    point = np.asarray(list(voxel), dtype=float)
    found = {}
    for plane in PLANES:
        place = layout(volume, plane)
        index = int(np.clip(round(point[place.axis]), 0, volume.shape[place.axis] - 1))
        found[plane] = (index, place.from_voxel(point))
    return found


# -- The view -----------------------------------------------------------------------------------
def _as_volume(source: Any) -> Volume:
    if isinstance(source, Volume):
        return source
    if isinstance(source, os.PathLike):
        return load_volume(os.fspath(source))
    if isinstance(source, Sequence) and not isinstance(source, str):
        return load_volume([os.fspath(s) if isinstance(s, os.PathLike) else s for s in source])
    return load_volume(source)


class MprView(View):
    """Axial, coronal and sagittal reformats of a volume with a linked crosshair and a shared window.

    Parameters
    ----------
    volume_or_sources : Volume, or sequence of InstanceRecord or str, or one of them
        A :class:`~dicomnb.core.volume.Volume`, or what :func:`~dicomnb.core.volume.load_volume`
        reads: the instances of one series, or one multi-frame instance with frame positions.
    title : str
        The line above the planes (default: modality, series description, size and spacing).

    Attributes
    ----------
    volume : Volume
        What is shown.
    point : tuple of int
        The crosshair: a voxel ``(slice, row, column)`` (starts at the centre).
    window : Window
        The window shared by the three planes (starts at the file's first, else the 1st to
        99th percentile of the values).

    Raises
    ------
    NotAVolume
        The sources are not one grid (one image, differing orientations...): show them as a stack.
    """

    kind = "mpr"

    def __init__(self, volume_or_sources: Any, *, title: str = "") -> None:
        self.volume = _as_volume(volume_or_sources)
        super().__init__(title or self._default_title())
        self.point: tuple[int, int, int] = tuple(s // 2 for s in self.volume.shape)  # type: ignore[assignment]
        self.info: FrameInfo | None = None
        if self.volume.reference is not None:
            try:
                self.info = frame_info(self.volume.reference)
            except DicomnbError:
                self.info = None
        self._presets = self._make_presets()
        self.window: Window = self._presets[0]

    def _default_title(self) -> str:
        ds = self.volume.reference
        parts = []
        if ds is not None:
            parts += [str(ds.get("Modality", "") or ""), str(ds.get("SeriesDescription", "") or "")]
        shape = " × ".join(str(s) for s in self.volume.shape)
        spacing = " × ".join(f"{s:.3g}" for s in self.volume.spacing)
        parts.append(f"{shape} voxels of {spacing} mm")
        return " · ".join(p for p in parts if p)

    def _make_presets(self) -> list[Window]:
        presets: list[Window] = list(self.info.windows) if self.info is not None else []
        centre, width = self.volume.default_window()
        if not presets:
            presets.append(Window("Auto", centre, width, "LINEAR_EXACT",
                                  explanation="the 1st to 99th percentile of the values"))
        array = self.volume.array
        low, high = float(array.min()), float(array.max())
        presets.append(Window("Min/max", (low + high) / 2, max(high - low, 1e-6), "LINEAR_EXACT",
                              explanation="the volume's lowest value black, its highest white"))
        if self.info is not None and self.info.modality == "CT":
            presets.extend(CT_PRESETS.values())
        return presets

    def presets(self) -> list[Window]:
        """The windows to choose from: the file's, min/max, and lung, bone, brain, abdomen for CT."""
        return list(self._presets)

    def set_window(self, window: Window | tuple[float, float] | str) -> None:
        """Set the shared window: a :class:`Window`, ``(centre, width)`` or a preset's name."""
        if isinstance(window, Window):
            self.window = window
        elif isinstance(window, str):
            for preset in self._presets:
                if window.lower() in (preset.name.lower(), preset.label.lower()):
                    self.window = preset
                    return
            names = ", ".join(p.name for p in self._presets)
            raise InputError(f"no window called {window!r} for this volume; there are: {names}")
        else:
            centre, width = window
            base = self._presets[0]
            function = base.function if base.lut is None else "LINEAR"
            self.window = Window("Custom", float(centre), float(width), function)

    # -- the crosshair ------------------------------------------------------------------------
    def set_point(self, voxel: Iterable[float] | None = None, *, patient: Iterable[float] | None = None) -> None:
        """Put the crosshair on a voxel ``(slice, row, column)``, or on the voxel nearest a
        patient position (mm); clipped to the volume."""
        if (voxel is None) == (patient is None):
            raise InputError("give either a voxel or a patient position")
        if patient is not None:
            target = self.volume.patient_to_voxel(patient)
        else:
            assert voxel is not None
            target = np.asarray(list(voxel), dtype=float)
        if target.shape != (3,):
            raise InputError(f"a point has 3 coordinates, not {target.shape[0]}")
        clipped = np.clip(np.rint(target), 0, np.asarray(self.volume.shape) - 1).astype(int)
        self.point = (int(clipped[0]), int(clipped[1]), int(clipped[2]))

    def move(self, plane: str, index: int) -> None:
        """Show cut ``index`` of ``plane`` (its slider): the crosshair moves along the plane's axis."""
        axis = layout(self.volume, plane).axis
        point = list(self.point)
        point[axis] = index
        self.set_point(point)

    def click(self, plane: str, row: float, column: float) -> None:
        """Put the crosshair under a displayed pixel ``(row, column)`` of ``plane`` (before squaring)."""
        self.set_point(self.reformat(plane).to_voxel(row, column))

    @property
    def patient_point(self) -> np.ndarray:
        """The crosshair's patient position (mm)."""
        return self.volume.voxel_to_patient(self.point)

    def index(self, plane: str) -> int:
        """The cut of ``plane`` shown: the crosshair's index along the plane's axis."""
        return self.point[layout(self.volume, plane).axis]

    def reformat(self, plane: str) -> Reformat:
        """The cut of ``plane`` through the crosshair."""
        return reformat(self.volume, plane, self.index(plane))

    # -- rendering ----------------------------------------------------------------------------
    def _display(self, values: np.ndarray) -> np.ndarray:
        window = self.window
        if self.info is not None:
            return voi_display(values, self.info, window)
        return apply_window(values, window.center, window.width, window.function)

    def render(self, plane: str, center: float | None = None, width: float | None = None, *,
               crosshair: bool = True) -> np.ndarray:
        """``plane`` through the crosshair as RGB display values (uint8, pixels made square),
        with the other two planes' lines when ``crosshair``.

        ``center`` and ``width`` set the shared window first, when both are given.
        """
        if center is not None and width is not None:
            self.set_window((center, width))
        cut = self.reformat(plane)
        grey = self._display(cut.pixels)
        image = square_pixels(grey, cut.layout.aspect)
        rgb = np.repeat(image[..., np.newaxis], 3, axis=2)
        if crosshair:
            row, column = cut.from_voxel(self.point)
            scale_rows = image.shape[0] / grey.shape[0]
            scale_columns = image.shape[1] / grey.shape[1]
            at_row = min(int((row + 0.5) * scale_rows), image.shape[0] - 1)
            at_column = min(int((column + 0.5) * scale_columns), image.shape[1] - 1)
            for other in PLANES:
                if other == plane:
                    continue
                axis = layout(self.volume, other).axis
                colour = np.asarray(COLOURS[other], dtype=np.uint8)
                if axis == cut.layout.vertical:
                    rgb[at_row, :] = colour  # that plane cuts this one along a row
                else:
                    rgb[:, at_column] = colour
        return rgb

    def png(self, plane: str, center: float | None = None, width: float | None = None, *,
            crosshair: bool = True) -> bytes:
        """:meth:`render` as PNG bytes."""
        return encode_png(self.render(plane, center, width, crosshair=crosshair))

    def caption(self) -> str:
        """The crosshair (voxel, patient position, value) and the window, on one line."""
        x, y, z = self.patient_point
        value = self.volume.array[self.point]
        parts = [f"voxel {self.point}", f"patient ({x:.1f}, {y:.1f}, {z:.1f}) mm", f"value {value:g}",
                 self.window.label]
        return " · ".join(parts)

    def _plane_html(self, plane: str, png: bytes, size: tuple[int, int]) -> str:
        place = layout(self.volume, plane)
        width = _shown_width(size[1])
        count = self.volume.shape[place.axis]
        colour = "rgb({},{},{})".format(*COLOURS[plane])
        letters = {side: html.escape(text) for side, text in place.labels.items()}
        return (
            f"<figure class='dicomnb-mpr-plane dicomnb-mpr-{plane}' style='display:inline-grid;"
            "grid-template-columns:auto auto auto;align-items:center;justify-items:center;"
            f"margin:4px;border-top:3px solid {colour}'>"
            f"<span></span><span class='dicomnb-mpr-top'>{letters['top']}</span><span></span>"
            f"<span class='dicomnb-mpr-left'>{letters['left']}&nbsp;</span>"
            f"{png_html(png, alt=f'{plane} {self.index(plane) + 1}/{count}', width=width)}"
            f"<span class='dicomnb-mpr-right'>&nbsp;{letters['right']}</span>"
            f"<span></span><span class='dicomnb-mpr-bottom'>{letters['bottom']}</span><span></span>"
            f"<figcaption style='grid-column:1/4'>{plane.capitalize()} {self.index(plane) + 1}/{count}"
            "</figcaption></figure>"
        )

    def html(self) -> str:
        """The three planes side by side with the crosshair and side labels (no kernel needed)."""
        try:
            figures = []
            for plane in PLANES:
                image = self.render(plane)
                figures.append(self._plane_html(plane, encode_png(image), image.shape[:2]))
        except DicomnbError as exc:
            return view_html(self.kind, self.title, error=exc, what="This volume")
        notes = "".join(f"<div class='dicomnb-note'>{html.escape(n)}</div>" for n in self.volume.notes)
        return view_html(self.kind, self.title,
                         f"<div>{''.join(figures)}</div><div>{html.escape(self.caption())}</div>{notes}")

    # -- widgets ------------------------------------------------------------------------------
    def build_widget(self) -> Any:
        import ipywidgets as widgets

        return _Controls(self, widgets).box


class _Controls:
    """Three images with a slider each (the crosshair's index in that plane), and the window."""

    def __init__(self, view: MprView, widgets: Any) -> None:
        self.view = view
        self.syncing = False
        self.images: dict[str, Any] = {}
        self.sliders: dict[str, Any] = {}
        columns = []
        for plane in PLANES:
            count = view.volume.shape[layout(view.volume, plane).axis]
            place = layout(view.volume, plane)
            # columns are repeated when a pixel is wider than high (square_pixels)
            shown = _shown_width(round(place.shape[1] / min(place.aspect, 1.0)))
            image = widgets.Image(format="png", layout=widgets.Layout(width=f"{shown}px"))
            image.add_class(f"dicomnb-mpr-{plane}")
            slider = widgets.IntSlider(value=view.index(plane), min=0, max=count - 1,
                                       description=plane.capitalize(), continuous_update=True,
                                       layout=widgets.Layout(width=f"{_SHOWN_WIDTH}px"))
            slider.observe(self._on_slider, names="value")
            self.images[plane], self.sliders[plane] = image, slider
            columns.append(widgets.VBox([image, slider]))
        presets = view.presets()
        values = [p.center - p.width / 2 for p in presets] + [p.center + p.width / 2 for p in presets]
        low, high = min(values), max(values)
        self.caption = widgets.Label()
        self.status = widgets.HTML()
        self.window = WindowControls(widgets, presets, low, high, high - low, view.window, self._apply)
        notes = widgets.HTML("".join(f"<div>{html.escape(n)}</div>" for n in view.volume.notes))
        rows = [widgets.HTML(f"<b>{html.escape(view.title)}</b>") if view.title else None,
                widgets.HBox(columns), self.window.box,
                self.caption, notes, self.status]
        self.box = widgets.VBox([row for row in rows if row is not None])
        self.box.add_class("dicomnb-mpr")
        self.draw()

    def _apply(self, window: Window | tuple[float, float]) -> Window:
        self.view.set_window(window)
        self.draw()
        return self.view.window

    def _on_slider(self, change: dict[str, Any]) -> None:
        if self.syncing:
            return
        plane = next(p for p, s in self.sliders.items() if s is change["owner"])
        self.view.move(plane, change["new"])
        self.draw()

    def draw(self) -> None:
        """Render the three planes through the crosshair (errors go to the status line)."""
        view = self.view
        try:
            for plane in PLANES:
                self.images[plane].value = view.png(plane)
        except DicomnbError as exc:
            self.status.value = f"<span class='dicomnb-error'>{html.escape(str(exc))}</span>"
            return
        self.syncing = True
        try:
            for plane, slider in self.sliders.items():
                slider.value = view.index(plane)
        finally:
            self.syncing = False
        self.caption.value = view.caption()
        self.status.value = ""
