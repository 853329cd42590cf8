"""The Query/Retrieve tab's result table: studies to select, each expandable to its series.

The table shows one display page of studies at a time (:data:`PAGE_SIZE`, with Previous and
Next), so a result of 10,000 studies stays as responsive as one of ten: the rows are a fixed
pool of small widgets made once, and turning the page only sets their values. A study's
series are listed when it is first expanded (by the tab: a SERIES-level query) and their
rows (by series number) are made for the display page only.

What is selected decides what an import fetches (:meth:`ResultsTable.selection`): a study
ticked means the whole study; series ticked inside an expanded study mean only those.
Every widget carries a ``dicomnb-results-...`` CSS class for the browser tests.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from dicomnb.core.deps import import_optional_dependency
from dicomnb.widgets.common import button, close_tree, plural, show, shown

if TYPE_CHECKING:
    import ipywidgets as widgets
else:
    widgets = import_optional_dependency("ipywidgets", "notebook")

__all__ = ["LISTING", "PAGE_SIZE", "SERIES_COLUMNS", "STUDY_COLUMNS", "ResultsTable", "SeriesRow", "StudyRow", "cell_text"]

#: Studies shown per display page.
PAGE_SIZE = 25
#: What an expanded study shows while its series are being listed.
LISTING = "Listing the series…"

#: The study columns: (heading, DICOM keyword, width).
STUDY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Patient name", "PatientName", "13em"),
    ("Patient ID", "PatientID", "8em"),
    ("Birth date", "PatientBirthDate", "6.5em"),
    ("Study date", "StudyDate", "6.5em"),
    ("Modalities", "ModalitiesInStudy", "6em"),
    ("Description", "StudyDescription", "14em"),
    ("Accession", "AccessionNumber", "7em"),
    ("Series", "NumberOfStudyRelatedSeries", "4.5em"),
    ("Instances", "NumberOfStudyRelatedInstances", "6em"),
)

#: The series columns: (heading, DICOM keyword, width).
SERIES_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Number", "SeriesNumber", "4em"),
    ("Modality", "Modality", "5em"),
    ("Description", "SeriesDescription", "16em"),
    ("Date", "SeriesDate", "6.5em"),
    ("Body part", "BodyPartExamined", "7em"),
    ("Instances", "NumberOfSeriesRelatedInstances", "4.5em"),
)

_DATE_KEYWORDS = frozenset({"PatientBirthDate", "StudyDate", "SeriesDate"})
_CELL = ("display:inline-block;width:{width};overflow:hidden;text-overflow:ellipsis;white-space:nowrap;"
         "padding-right:0.5em;vertical-align:middle")


def cell_text(keyword: str, value: Any) -> str:
    """A query row's value as the table shows it (dates as ``YYYY-MM-DD``, lists joined)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value if v is not None)
    text = str(value)
    if keyword in _DATE_KEYWORDS and len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def _cells(columns: Sequence[tuple[str, str, str]], texts: Sequence[str], bold: bool = False) -> str:
    spans = []
    for (_, _, width), text in zip(columns, texts, strict=True):
        escaped = html.escape(text)
        spans.append(f'<span style="{_CELL.format(width=width)}" title="{escaped}">'
                     + (f"<b>{escaped}</b>" if bold else escaped) + "</span>")
    return "".join(spans)


def _checkbox(css: str, tooltip: str) -> widgets.Checkbox:
    box = widgets.Checkbox(value=False, indent=False, tooltip=tooltip, layout=widgets.Layout(width="2em"))
    box.add_class(css)
    return box


class StudyRow(widgets.HBox):
    """One study's row, reused for whichever study the display page puts there.

    Attributes
    ----------
    select : Checkbox
        Ticked: the whole study is imported (``dicomnb-results-select``).
    expand : Button
        Shows or hides its series (``dicomnb-results-expand``).
    cells : HTML
        The study's columns (:data:`STUDY_COLUMNS`).
    uid : str
        The StudyInstanceUID it shows ("" when unused).
    texts : dict of str to str
        The values shown, by keyword (what a user reads in the row).
    """

    def __init__(self) -> None:
        self.select = _checkbox("dicomnb-results-select", "Import the whole study")
        self.expand = button("▸", "dicomnb-results-expand", "Show the study's series")
        self.cells = widgets.HTML()
        self.cells.add_class("dicomnb-results-cells")
        super().__init__([self.select, self.expand, self.cells], layout=widgets.Layout(align_items="center"))
        self.add_class("dicomnb-results-row")
        self.uid = ""
        self.texts: dict[str, str] = {}

    def update(self, row: dict[str, Any], expanded: bool) -> None:
        """Show ``row`` (a study-level query row)."""
        self.uid = str(row.get("StudyInstanceUID") or "")
        self.texts = {keyword: cell_text(keyword, row.get(keyword)) for _, keyword, _ in STUDY_COLUMNS}
        self.cells.value = _cells(STUDY_COLUMNS, list(self.texts.values()))
        self.expand.description = "▾" if expanded else "▸"
        self.expand.tooltip = "Hide the study's series" if expanded else "Show the study's series"


class SeriesRow(widgets.HBox):
    """One series of an expanded study: its checkbox and its columns.

    Attributes
    ----------
    select : Checkbox
        Ticked: the series is imported (``dicomnb-results-series-select``).
    uid : str
        Its SeriesInstanceUID.
    texts : dict of str to str
        The values shown, by keyword.
    """

    def __init__(self, row: dict[str, Any]) -> None:
        self.uid = str(row.get("SeriesInstanceUID") or "")
        self.select = _checkbox("dicomnb-results-series-select", "Import this series")
        self.texts = {keyword: cell_text(keyword, row.get(keyword)) for _, keyword, _ in SERIES_COLUMNS}
        cells = widgets.HTML(_cells(SERIES_COLUMNS, list(self.texts.values())))
        cells.add_class("dicomnb-results-cells")
        spacer = widgets.HTML(layout=widgets.Layout(width="4.5em"))
        super().__init__([spacer, self.select, cells], layout=widgets.Layout(align_items="center"))
        self.add_class("dicomnb-results-series-row")


def _series_order(row: dict[str, Any]) -> tuple[bool, int]:
    """Series by number (archives answer in their own order), those without one last."""
    try:
        return False, int(row.get("SeriesNumber"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True, 0


class ResultsTable(widgets.VBox):
    """The studies of a query, a display page at a time, with their series on demand.

    Parameters
    ----------
    on_expand : callable, optional
        ``on_expand(study_uid)`` is called when a study is expanded whose series are not
        known yet; the caller lists them and hands them to :meth:`set_series`.
    page_size : int
        Studies per display page.

    Attributes
    ----------
    rows : list of dict
        The studies (query rows) of the result shown.
    display_page : int
        The display page shown (0-based).
    study_rows : list of StudyRow
        The pool of row widgets (the shown ones first).
    select_all, prev, next : Checkbox, Button, Button
        ``dicomnb-results-select-all``, ``dicomnb-results-prev``, ``dicomnb-results-next``.
    message, pages, selected_text : HTML, Label, Label
        The query's message (``dicomnb-results-message``), "Studies 1–25 of 10000"
        (``dicomnb-results-pages``), "2 studies selected" (``dicomnb-results-selection``).
    """

    def __init__(self, on_expand: Callable[[str], object] | None = None, page_size: int = PAGE_SIZE) -> None:
        super().__init__()
        self.add_class("dicomnb-results")
        self.on_expand = on_expand
        self.page_size = page_size
        self.rows: list[dict[str, Any]] = []
        self.display_page = 0
        self._lock = threading.RLock()
        self._quiet = False
        self._index: dict[str, int] = {}
        self._selected: set[str] = set()            # studies imported whole
        self._partial: dict[str, set[str]] = {}     # studies of which only some series are
        self._expanded: set[str] = set()
        self._series: dict[str, list[dict[str, Any]]] = {}
        self._series_note: dict[str, str] = {}      # LISTING, or why the listing failed

        self.select_all = _checkbox("dicomnb-results-select-all", "Select every study of the result")
        self.select_all.observe(self._select_all_changed, names="value")
        header = widgets.HTML(_cells(STUDY_COLUMNS, [heading for heading, _, _ in STUDY_COLUMNS], bold=True))
        header.add_class("dicomnb-results-header-cells")
        spacer = widgets.HTML(layout=widgets.Layout(width="2.5em"))
        self.header = widgets.HBox([self.select_all, spacer, header], layout=widgets.Layout(align_items="center"))
        self.header.add_class("dicomnb-results-header")
        self.study_rows: list[StudyRow] = []
        self._series_boxes: list[widgets.VBox] = []
        body: list[widgets.Widget] = []
        for _ in range(page_size):
            row = StudyRow()
            row.select.observe(lambda change, row=row: self._study_ticked(row.uid, change["new"]), names="value")
            row.expand.on_click(lambda _, row=row: self.toggle(row.uid))
            box = widgets.VBox()
            box.add_class("dicomnb-results-series")
            show(row, False)
            show(box, False)
            self.study_rows.append(row)
            self._series_boxes.append(box)
            body += [row, box]
        self.body = widgets.VBox(body)
        self.body.add_class("dicomnb-results-body")
        self.prev = button("◀ Previous", "dicomnb-results-prev", "The previous studies")
        self.next = button("Next ▶", "dicomnb-results-next", "The next studies")
        self.prev.on_click(lambda _: self.turn(-1))
        self.next.on_click(lambda _: self.turn(1))
        self.pages = widgets.Label()
        self.pages.add_class("dicomnb-results-pages")
        self.selected_text = widgets.Label()
        self.selected_text.add_class("dicomnb-results-selection")
        self.footer = widgets.HBox([self.prev, self.pages, self.next, self.selected_text],
                                   layout=widgets.Layout(align_items="center"))
        self.footer.add_class("dicomnb-results-footer")
        self.message = widgets.HTML()
        self.message.add_class("dicomnb-results-message")
        self.children = (self.message, self.header, self.body, self.footer)
        self.show_rows([])

    # -- what it shows -----------------------------------------------------------------------------
    def show_rows(self, rows: Iterable[dict[str, Any]], message: str = "") -> None:
        """Show these studies (query rows) from the first display page, nothing selected."""
        with self._lock:
            self.rows = list(rows)
            self._index = {}
            for number, row in enumerate(self.rows):
                uid = str(row.get("StudyInstanceUID") or "")
                if uid:
                    self._index.setdefault(uid, number)
            self._selected.clear()
            self._partial.clear()
            self._expanded.clear()
            self._series.clear()
            self._series_note.clear()
            self.display_page = 0
            self.set_message(message)
            self._render()

    def show_result(self, result: Any) -> None:
        """Show a query result (``.rows`` and ``.message``, as :class:`~dicomnb.QueryResult`)."""
        self.show_rows(result.rows, result.message)

    def clear(self, message: str = "") -> None:
        """Show no study."""
        self.show_rows([], message)

    def set_message(self, message: str, level: str = "") -> None:
        """The line above the table (the query's message, "Searching…", an error)."""
        colour = {"error": "#b71c1c", "warning": "#8a5a00"}.get(level, "inherit")
        self.message.value = f'<span style="color:{colour}">{html.escape(message)}</span>' if message else ""
        show(self.message, bool(message))

    @property
    def page_count(self) -> int:
        """Display pages (at least 1)."""
        return max(1, -(-len(self.rows) // self.page_size))

    def turn(self, step: int) -> None:
        """Show the display page ``step`` pages further (negative: back), within bounds."""
        self.go_to(self.display_page + step)

    def go_to(self, page: int) -> None:
        """Show display page ``page`` (0-based, clamped)."""
        with self._lock:
            page = min(max(page, 0), self.page_count - 1)
            if page != self.display_page:
                self.display_page = page
                self._render()

    def displayed(self) -> list[StudyRow]:
        """The study rows shown, top to bottom."""
        return [row for row in self.study_rows if shown(row)]

    def series_rows(self, study_uid: str) -> list[SeriesRow]:
        """The series rows shown under the study ``study_uid`` (none when not on this page)."""
        box = self._box_of(study_uid)
        return [child for child in box.children if isinstance(child, SeriesRow)] if box is not None else []

    def _render(self) -> None:
        with self._lock:
            start = self.display_page * self.page_size
            shown_rows = self.rows[start:start + self.page_size]
            self._quiet = True
            try:
                for number, (row, box) in enumerate(zip(self.study_rows, self._series_boxes, strict=True)):
                    if number < len(shown_rows):
                        data = shown_rows[number]
                        uid = str(data.get("StudyInstanceUID") or "")
                        row.update(data, uid in self._expanded)
                        row.select.value = uid in self._selected
                        row.select.disabled = row.expand.disabled = not uid
                        show(row, True)
                    else:
                        row.uid, row.texts = "", {}
                        show(row, False)
                    self._fill_series(row, box)
                self.select_all.value = bool(self._index) and len(self._selected) == len(self._index)
                self.select_all.disabled = not self._index
            finally:
                self._quiet = False
            if self.rows:
                last = min(start + self.page_size, len(self.rows))
                self.pages.value = (f"Studies {start + 1}–{last} of {len(self.rows)}"
                                    + (f" (page {self.display_page + 1} of {self.page_count})"
                                       if self.page_count > 1 else ""))
            else:
                self.pages.value = ""
            self.prev.disabled = self.display_page == 0
            self.next.disabled = self.display_page >= self.page_count - 1
            show(self.footer, bool(self.rows))
            show(self.header, bool(self.rows))
            self._show_selection()

    def _box_of(self, study_uid: str) -> widgets.VBox | None:
        for row, box in zip(self.study_rows, self._series_boxes, strict=True):
            if shown(row) and row.uid == study_uid:
                return box
        return None

    def _fill_series(self, row: StudyRow, box: widgets.VBox) -> None:
        """Make the series rows of ``row``'s study if it is expanded (and close the old ones)."""
        for child in box.children:
            close_tree(child)
        children: list[widgets.Widget] = []
        uid = row.uid if shown(row) else ""
        if uid and uid in self._expanded:
            note = self._series_note.get(uid)
            if note:
                label = widgets.HTML(f"<i>{html.escape(note)}</i>", layout=widgets.Layout(margin="0 0 0 4.5em"))
                label.add_class("dicomnb-results-series-note")
                children.append(label)
            else:
                chosen = self._chosen_series(uid)
                for data in self._series.get(uid, []):
                    series = SeriesRow(data)
                    series.select.value = series.uid in chosen
                    series.select.disabled = not series.uid
                    series.select.observe(
                        lambda change, study=uid, series_uid=series.uid: self._series_ticked(
                            study, series_uid, change["new"]), names="value")
                    children.append(series)
                if not children:
                    empty = widgets.HTML("<i>No series listed.</i>", layout=widgets.Layout(margin="0 0 0 4.5em"))
                    empty.add_class("dicomnb-results-series-note")
                    children.append(empty)
        box.children = tuple(children)
        show(box, bool(children))

    # -- expanding ---------------------------------------------------------------------------------
    def toggle(self, study_uid: str) -> None:
        """Expand the study (listing its series if not known yet), or collapse it."""
        if not study_uid:
            return
        with self._lock:
            if study_uid in self._expanded:
                self._expanded.discard(study_uid)
                wanted = False
            else:
                self._expanded.add(study_uid)
                # not listed yet, or the listing failed (expanding again tries again)
                wanted = study_uid not in self._series and self._series_note.get(study_uid) != LISTING
                if wanted:
                    self._series_note[study_uid] = LISTING
            self._refresh_study(study_uid)
        if wanted and self.on_expand is not None:
            self.on_expand(study_uid)

    def expand(self, study_uid: str) -> None:
        """Expand the study (nothing if it is expanded already)."""
        if study_uid not in self._expanded:
            self.toggle(study_uid)

    def is_expanded(self, study_uid: str) -> bool:
        return study_uid in self._expanded

    def set_series(self, study_uid: str, rows: Iterable[dict[str, Any]] | None, note: str = "") -> None:
        """The series of ``study_uid`` (query rows), or None and ``note`` saying why there are none."""
        with self._lock:
            if study_uid not in self._index:
                return  # a study of an older result
            if rows is None:
                self._series.pop(study_uid, None)
                self._series_note[study_uid] = note or "The series could not be listed."
            else:
                self._series[study_uid] = sorted((row for row in rows if row.get("SeriesInstanceUID")),
                                                 key=_series_order)
                self._series_note.pop(study_uid, None)
            self._refresh_study(study_uid)

    def _refresh_study(self, study_uid: str, rebuild: bool = True) -> None:
        """Show the study's state again (its tick, its series), and the select-all tick.

        ``rebuild``: make its series rows again (they changed, or it was expanded or
        collapsed); otherwise only their ticks are set, so the box clicked stays the same widget.
        """
        self._quiet = True
        try:
            for row, box in zip(self.study_rows, self._series_boxes, strict=True):
                if shown(row) and row.uid == study_uid:
                    row.expand.description = "▾" if study_uid in self._expanded else "▸"
                    row.select.value = study_uid in self._selected
                    if rebuild:
                        self._fill_series(row, box)
                    else:
                        chosen = self._chosen_series(study_uid)
                        for series in box.children:
                            if isinstance(series, SeriesRow):
                                series.select.value = series.uid in chosen
            self.select_all.value = bool(self._index) and len(self._selected) == len(self._index)
        finally:
            self._quiet = False
        self._show_selection()

    # -- selecting ---------------------------------------------------------------------------------
    def _chosen_series(self, study_uid: str) -> set[str]:
        if study_uid in self._selected:
            return {str(row["SeriesInstanceUID"]) for row in self._series.get(study_uid, [])}
        return set(self._partial.get(study_uid, ()))

    # A tick's observer reads ``_quiet`` under the lock: the table sets its ticks (quietly) from
    # the search's and the series listings' threads too, and a user's tick that comes in
    # meanwhile must wait for them, not be taken for one of theirs.
    def _study_ticked(self, study_uid: str, value: bool) -> None:
        with self._lock:
            if not self._quiet and study_uid:
                self.select_study(study_uid, value)

    def _series_ticked(self, study_uid: str, series_uid: str, value: bool) -> None:
        with self._lock:
            if not self._quiet:
                self.select_series(study_uid, series_uid, value)

    def _select_all_changed(self, change: dict[str, Any]) -> None:
        with self._lock:
            if not self._quiet:
                self.select_every(bool(change["new"]))

    def select_study(self, study_uid: str, value: bool = True) -> None:
        """Tick (or untick) a study: the whole study, all its series."""
        with self._lock:
            if study_uid not in self._index:
                raise KeyError(f"no study {study_uid} in the results")
            self._partial.pop(study_uid, None)
            if value:
                self._selected.add(study_uid)
            else:
                self._selected.discard(study_uid)
            self._refresh_study(study_uid, rebuild=False)

    def select_series(self, study_uid: str, series_uid: str, value: bool = True) -> None:
        """Tick (or untick) one series of an expanded study; all of them ticked is the study."""
        with self._lock:
            every = [str(row["SeriesInstanceUID"]) for row in self._series.get(study_uid, [])]
            if series_uid not in every:
                raise KeyError(f"no series {series_uid} listed for study {study_uid}: expand it first")
            chosen = self._chosen_series(study_uid)
            if value:
                chosen.add(series_uid)
            else:
                chosen.discard(series_uid)
            self._selected.discard(study_uid)
            self._partial.pop(study_uid, None)
            if chosen == set(every):
                self._selected.add(study_uid)
            elif chosen:
                self._partial[study_uid] = chosen
            self._refresh_study(study_uid, rebuild=False)

    def select_every(self, value: bool = True) -> None:
        """Tick (or untick) every study of the result, not only the page shown."""
        with self._lock:
            self._partial.clear()
            self._selected = set(self._index) if value else set()
            self._render()

    def selection(self) -> list[tuple[str, tuple[str, ...] | None]]:
        """What an import fetches, in the result's order: ``(study_uid, None)`` for a whole
        study, ``(study_uid, (series_uid, ...))`` for some of its series."""
        with self._lock:
            chosen: list[tuple[str, tuple[str, ...] | None]] = []
            for uid in self._index:
                if uid in self._selected:
                    chosen.append((uid, None))
                elif self._partial.get(uid):
                    order = [str(row["SeriesInstanceUID"]) for row in self._series.get(uid, [])]
                    chosen.append((uid, tuple(s for s in order if s in self._partial[uid])))
            return chosen

    def _show_selection(self) -> None:
        studies = len(self._selected)
        partial = sum(len(series) for series in self._partial.values())
        parts = []
        if studies:
            parts.append(plural(studies, "study", "studies"))
        if partial:
            parts.append(f"{plural(partial, 'series', 'series')} of {plural(len(self._partial), 'study', 'studies')}")
        self.selected_text.value = (" and ".join(parts) + " selected") if parts else ""
