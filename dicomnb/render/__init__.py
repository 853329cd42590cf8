"""Inline views of what the catalog holds (matplotlib and PNG thumbnails)."""

from dicomnb.render.thumbnail import display_frame, series_figure, thumbnail_png

__all__ = ["display_frame", "series_figure", "thumbnail_png"]
