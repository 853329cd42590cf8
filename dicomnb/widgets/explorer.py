"""After an import: the catalog as patient → study → series, with counts and a thumbnail per series.

Each series row has an **Open** button that renders it in the viewer below the explorer
(:func:`dicomnb.render.series_figure`); "Open after import" does the same for the first
series an import brought. The catalog's DataFrames (patients, studies, series, instances,
and the errors, missing files, images and attachments) are one toggle away, shown a page at
a time. Thumbnails are made off the main thread once the rows are shown.

Imports end on their tabs' threads and refresh the explorer from there, while a user turns
its views on the kernel's: a lock makes each refresh read the catalog and show it in one
step, so an older look at the catalog never replaces a newer one.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dicomnb.core.deps import import_optional_dependency
from dicomnb.widgets.common import button, close_children, close_tree, plural, show

if TYPE_CHECKING:
    import ipywidgets as widgets
else:
    widgets = import_optional_dependency("ipywidgets", "notebook")

__all__ = ["EXPLORER_SERIES", "Explorer"]

#: Series the explorer shows rows for (the rest are counted, and in the DataFrames).
EXPLORER_SERIES = 60
#: Rows of a DataFrame shown at once.
FRAME_ROWS = 50
_VIEWS = ("Explorer", "Patients", "Studies", "Series", "Instances", "Errors", "Missing", "Images", "Attachments")


def _missing(value: Any) -> bool:
    """None, NaN or pandas' NA (a cell of the catalog's DataFrames with no value)."""
    import pandas as pd

    return bool(pd.isna(value)) if not isinstance(value, (list, tuple)) else False


def _text(value: Any) -> str:
    return "" if _missing(value) else str(value)


class Explorer(widgets.VBox):
    """The catalog, browsable: a tree with thumbnails, or one of its DataFrames.

    ``catalog`` is :data:`dicomnb.catalog` (or a Catalog). :meth:`refresh` rebuilds the view;
    :meth:`open_series` renders one series in :attr:`viewer`. CSS classes
    ``dicomnb-explorer``, ``dicomnb-explorer-view``, ``dicomnb-explorer-patient``,
    ``dicomnb-explorer-study``, ``dicomnb-explorer-series``, ``dicomnb-thumbnail``,
    ``dicomnb-explorer-open``, ``dicomnb-explorer-frame``, ``dicomnb-viewer``.
    """

    def __init__(self, catalog: Any, *, thumbnail: Callable[[str], bytes | None] | None = None) -> None:
        from dicomnb.render import thumbnail_png

        self.catalog = catalog
        self._thumbnail = thumbnail or thumbnail_png
        self.view = widgets.ToggleButtons(options=_VIEWS, value="Explorer", style={"button_width": "auto"})
        self.view.add_class("dicomnb-explorer-view")
        self.tree = widgets.VBox()
        self.table = widgets.HTML()
        self.table.add_class("dicomnb-explorer-frame")
        self.page = widgets.BoundedIntText(value=1, min=1, max=1, description="Page", layout=widgets.Layout(width="10em"))
        self.page.add_class("dicomnb-explorer-page")
        self.frame_box = widgets.VBox([self.page, self.table])
        self.viewer = widgets.Output()
        #: The view the viewer shows (:func:`dicomnb.show`'s result), None before any.
        self.shown: Any = None
        self.viewer.add_class("dicomnb-viewer")
        self.thumbnails: dict[str, widgets.Image] = {}
        self._generation = 0
        self._lock = threading.RLock()
        self._thumbs_done = threading.Event()
        self._thumbs_done.set()
        self.view.observe(lambda change: self.refresh(), names="value")
        self.page.observe(lambda change: self._show_frame(), names="value")
        super().__init__([self.view, self.tree, self.frame_box, self.viewer])
        self.add_class("dicomnb-explorer")
        self.refresh()

    # -- the tree ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Show the catalog as it is now (the tree, or the DataFrame chosen)."""
        with self._lock:
            tree_view = self.view.value == "Explorer"
            show(self.tree, tree_view)
            show(self.frame_box, not tree_view)
            if tree_view:
                self._build_tree()
            else:
                self.page.value = 1
                self._show_frame()

    def _show_tree(self, blocks: list[widgets.Widget]) -> None:
        """Show ``blocks`` as the tree; the widgets of the tree they replace are closed."""
        old, self.tree.children = self.tree.children, tuple(blocks)
        for block in old:
            close_tree(block)

    def _build_tree(self) -> None:
        series = self.catalog.series
        self._generation += 1
        if series.empty:
            self._show_tree([widgets.HTML("<i>Nothing imported yet.</i>")])
            self.thumbnails = {}
            self._thumbs_done.set()  # the thumbnails under way were for a tree that is gone
            return
        patients = self.catalog.patients.set_index("PatientID", drop=False)
        studies = self.catalog.studies.set_index("StudyInstanceUID", drop=False)
        shown_series = series.head(EXPLORER_SERIES)
        thumbnails: dict[str, widgets.Image] = {}
        blocks: list[widgets.Widget] = []
        for patient_id, of_patient in shown_series.groupby("PatientID", sort=False, dropna=False):
            patient = patients.loc[patient_id] if patient_id in patients.index else None
            name = _text(patient["PatientName"]) if patient is not None else ""
            counts = ""
            if patient is not None:
                counts = (f"{plural(int(patient['NumberOfPatientRelatedStudies']), 'study', 'studies')}, "
                          f"{plural(int(patient['NumberOfPatientRelatedSeries']), 'series', 'series')}, "
                          f"{plural(int(patient['NumberOfPatientRelatedInstances']), 'instance')}")
            head = widgets.HTML(f"<b>{html.escape(name or '(no name)')}</b> · ID {html.escape(_text(patient_id))}"
                                f" · {counts}")
            head.add_class("dicomnb-explorer-patient")
            rows: list[widgets.Widget] = [head]
            for study_uid, of_study in of_patient.groupby("StudyInstanceUID", sort=False, dropna=False):
                study = studies.loc[study_uid] if study_uid in studies.index else None
                label = " · ".join(part for part in (
                    _text(study["StudyDate"]) if study is not None else "",
                    _text(study["StudyDescription"]) if study is not None else "",
                    _text(study["ModalitiesInStudy"]) if study is not None else "") if part)
                count = int(study["NumberOfStudyRelatedSeries"]) if study is not None else len(of_study)
                study_head = widgets.HTML(f"&nbsp;&nbsp;Study {html.escape(label or _text(study_uid))} · "
                                          f"{plural(count, 'series', 'series')}")
                study_head.add_class("dicomnb-explorer-study")
                rows.append(study_head)
                for item in of_study.itertuples():
                    rows.append(self._series_row(item, thumbnails))
            block = widgets.VBox(rows)
            blocks.append(block)
        if len(series) > EXPLORER_SERIES:
            blocks.append(widgets.HTML(f"<i>… and {len(series) - EXPLORER_SERIES} more series: "
                                       "see the Series view, or dicomnb.catalog.series.</i>"))
        self.thumbnails = thumbnails
        self._show_tree(blocks)
        self._make_thumbnails(self._generation, dict(thumbnails))

    def _series_row(self, item: Any, thumbnails: dict[str, widgets.Image]) -> widgets.Widget:
        uid = str(item.SeriesInstanceUID)
        image = widgets.Image(format="png", width=48, height=48, layout=widgets.Layout(width="48px", height="48px"))
        image.add_class("dicomnb-thumbnail")
        image.layout.visibility = "hidden"  # until its picture comes: no broken-image box meanwhile
        thumbnails[uid] = image
        number = "" if _missing(item.SeriesNumber) else f" {item.SeriesNumber}"
        label = widgets.HTML(f"{html.escape(_text(item.Modality))}{number} {html.escape(_text(item.SeriesDescription))}"
                             f" · {plural(int(item.NumberOfSeriesRelatedInstances), 'instance')}")
        opener = button("Open", "dicomnb-explorer-open", "Show this series below")
        opener.on_click(lambda _, uid=uid: self.open_series(uid))
        row = widgets.HBox([image, label, opener], layout=widgets.Layout(margin="0 0 0 2em", align_items="center"))
        row.add_class("dicomnb-explorer-series")
        return row

    def _make_thumbnails(self, generation: int, images: dict[str, widgets.Image]) -> None:
        self._thumbs_done.clear()

        def work() -> None:
            try:
                for uid, image in images.items():
                    if generation != self._generation:
                        return
                    png = self._thumbnail(uid)
                    if png:
                        image.value = png
                        image.layout.visibility = "visible"
            finally:
                if generation == self._generation:
                    self._thumbs_done.set()

        threading.Thread(target=work, name="dicomnb-thumbnails", daemon=True).start()

    def wait_thumbnails(self, timeout: float | None = None) -> bool:
        """Wait until the shown series have their thumbnails (False on timeout)."""
        return self._thumbs_done.wait(timeout)

    def close(self) -> None:
        """Stop making thumbnails; close the explorer's widgets."""
        if hasattr(self, "_thumbs_done"):  # absent when the explorer failed half-made
            self._generation += 1  # the thumbnails' thread stops before its next series
            self._thumbs_done.set()
        super().close()
        close_children(self)

    # -- the DataFrames ---------------------------------------------------------------------------
    def frame(self, view: str | None = None) -> Any:
        """The catalog's DataFrame of a view ("Patients", "Studies", ...; default the one shown)."""
        return getattr(self.catalog, (view or self.view.value).lower())

    def _show_frame(self) -> None:
        with self._lock:
            if self.view.value == "Explorer":
                return
            frame = self.frame()
            pages = max(1, -(-len(frame) // FRAME_ROWS))
            self.page.max = pages
            page = min(self.page.value, pages)
            start = (page - 1) * FRAME_ROWS
            shown_rows = frame.iloc[start:start + FRAME_ROWS]
            self.table.value = (f"<div>{len(frame)} rows; page {page} of {pages}</div>"
                                f"<div style='max-height:24em;overflow:auto'>{shown_rows.to_html(index=False)}</div>")

    # -- the viewer -------------------------------------------------------------------------------
    def open_series(self, series_uid: str) -> None:
        """Show one series in the viewer with :func:`dicomnb.show` (replacing what it showed).

        In a live kernel that is the series' interactive view (window/level, slices, cine);
        the static rendering goes with it for a saved notebook.
        """
        from dicomnb.render.show import show as show_view

        self.viewer.clear_output()
        try:
            self.shown = show_view(series_uid)
            self.viewer.append_display_data(self.shown)
        except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, say it in the viewer
            self.shown = None
            self.viewer.append_stdout(f"Series {series_uid} cannot be shown: {type(exc).__name__}: {exc}\n")
