"""Inline views of what the catalog holds: :func:`dicomnb.show` and the views it returns.

Each view renders statically (``view.html()``: PNG or HTML, no kernel needed) and, in a live
kernel with ipywidgets, interactively (``view.widget()``). The pixel pipeline is in
:mod:`dicomnb.render.pixels`; volumes are :func:`dicomnb.core.volume.load_volume`'s.
"""

from dicomnb.render.base import View
from dicomnb.render.show import VIEWS, StudyView, show
from dicomnb.render.thumbnail import display_frame, forget_thumbnails, series_figure, thumbnail_png

__all__ = ["VIEWS", "StudyView", "View", "display_frame", "forget_thumbnails", "series_figure", "show",
           "thumbnail_png"]
