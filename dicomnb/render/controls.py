"""The window/level controls the image, stack and MPR views share (ipywidgets, passed in).

A presets dropdown and centre and width sliders, kept in step: choosing a preset moves the
sliders, moving a slider leaves no preset chosen. What a change does to the view is the
view's own ``apply(window)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dicomnb.render.pixels import Window

__all__ = ["WindowControls"]


class WindowControls:
    """A presets dropdown (``presets``) and ``center`` / ``width`` sliders, in ``box``.

    Parameters
    ----------
    widgets : module
        ipywidgets.
    presets : sequence of Window
        The dropdown's choices.
    low, high : float
        The centre slider's range (wide enough for every preset).
    widest : float
        The width slider's largest value.
    window : Window
        The window shown first.
    apply : callable
        ``apply(window)`` with a chosen preset (a Window) or the sliders' ``(center, width)``:
        sets it on the view and redraws; returns the Window now in effect.
    """

    def __init__(self, widgets: Any, presets: Sequence[Window], low: float, high: float, widest: float,
                 window: Window, apply: Callable[[Window | tuple[float, float]], Window]) -> None:
        self.choices = list(presets)
        self.apply = apply
        self.syncing = False
        span = max(high - low, 1e-3)
        step = 1.0 if span > 200 else span / 1000
        self.presets = widgets.Dropdown(options=[(p.label, i) for i, p in enumerate(self.choices)],
                                        description="Window", layout=widgets.Layout(width="auto"))
        self.presets.add_class("dicomnb-presets")
        self.center = widgets.FloatSlider(min=low, max=high, step=step, description="Centre", continuous_update=True)
        self.width = widgets.FloatSlider(min=step, max=max(widest, span), step=step, description="Width",
                                         continuous_update=True)
        self.center.add_class("dicomnb-center")
        self.width.add_class("dicomnb-width")
        self.show(window)
        self.presets.observe(self._on_preset, names="value")
        self.center.observe(self._on_window, names="value")
        self.width.observe(self._on_window, names="value")
        self.box = widgets.HBox([self.presets, self.center, self.width])

    def show(self, window: Window) -> None:
        """Set the controls to ``window`` without each change being applied."""
        self.syncing = True
        try:
            self.presets.index = self.choices.index(window) if window in self.choices else None
            self.center.value = min(max(window.center, self.center.min), self.center.max)
            self.width.value = min(max(window.width, self.width.min), self.width.max)
        finally:
            self.syncing = False

    def _on_preset(self, change: dict[str, Any]) -> None:
        if self.syncing or change["new"] is None:
            return
        self.show(self.apply(self.choices[change["new"]]))

    def _on_window(self, change: dict[str, Any]) -> None:
        if self.syncing:
            return
        self.apply((self.center.value, self.width.value))
        self.syncing = True
        self.presets.index = None
        self.syncing = False
