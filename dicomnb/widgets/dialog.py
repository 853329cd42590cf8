"""The import dialog: ``dicomnb.dialog()``.

One tab per source, titled exactly ``Local``, ``ZIP``, ``DICOMDIR``, ``Drop`` and
``Query/Retrieve``; under the tabs, one alert for what went wrong (or what an import
brought), the download panel, and the explorer of the catalog with its viewer::

    ┌ Local │ ZIP │ DICOMDIR │ Drop │ Query/Retrieve ┐   the tabs (widgets/files.py, droptab.py, query.py)
    │ ...                                          │
    └──────────────────────────────────────────────┘
    ⚠ 3 DICOM files cannot be read  [Details]         the alert (widgets/common.py)
    ▮▮▮▮▯▯ 40 of 120 instances …  Pause all …          the download panel (widgets/downloads.py)
    Explorer │ Patients │ Studies │ Series │ …         the explorer and viewer (widgets/explorer.py)

Each tab runs its work off the kernel's main thread (the notebook never freezes) and hands
an import's report to :meth:`ImportDialog.imported`: the alert says what came (and what
could not be read, with the details on demand), the explorer shows the catalog, and with
"Open after import" the first imported series is rendered at once. Every widget carries a
``dicomnb-...`` CSS class, the browser tests' selector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dicomnb.core.deps import import_optional_dependency
from dicomnb.core.report import ImportReport
from dicomnb.widgets.common import Alert, Tab, close_children, describe_report

if TYPE_CHECKING:
    import ipywidgets as widgets
else:
    widgets = import_optional_dependency("ipywidgets", "notebook")

__all__ = ["TAB_TITLES", "ImportDialog", "dialog"]

#: The tabs' titles, in order.
TAB_TITLES = ("Local", "ZIP", "DICOMDIR", "Drop", "Query/Retrieve")


class ImportDialog(widgets.VBox):
    """The import dialog (an ipywidgets VBox): source tabs, alert, downloads, explorer.

    Attributes
    ----------
    local, zip, dicomdir, drop, query : Tab
        The tabs, each with its controls and a :meth:`~dicomnb.widgets.common.Tab.wait`.
    tabs : ipywidgets.Tab
    alert : Alert
    downloads : DownloadPanel
    explorer : Explorer
    report : ImportReport or None
        The last import's report.
    """

    def __init__(self, *, downloads: Any = None, catalog: Any = None) -> None:
        from dicomnb.api import catalog as the_catalog
        from dicomnb.retrieving import downloads as the_downloads
        from dicomnb.widgets.downloads import DownloadPanel
        from dicomnb.widgets.droptab import DropTab
        from dicomnb.widgets.explorer import Explorer
        from dicomnb.widgets.files import DicomdirTab, LocalTab, ZipTab
        from dicomnb.widgets.query import QueryTab

        self.catalog = catalog if catalog is not None else the_catalog
        manager = downloads if downloads is not None else the_downloads
        self.report: ImportReport | None = None
        self.alert = Alert()
        self.local = LocalTab(alert=self.alert, imported=self.imported)
        self.zip = ZipTab(alert=self.alert, imported=self.imported)
        self.dicomdir = DicomdirTab(alert=self.alert, imported=self.imported)
        self.drop = DropTab(alert=self.alert, imported=self.imported)
        self.query = QueryTab(alert=self.alert, imported=self.imported, downloads=manager)
        pages: list[Tab] = [self.local, self.zip, self.dicomdir, self.drop, self.query]
        self.tabs = widgets.Tab(children=pages, titles=TAB_TITLES)
        self.tabs.add_class("dicomnb-tabs")
        self.downloads = DownloadPanel(manager)
        self.explorer = Explorer(self.catalog)
        super().__init__([self.tabs, self.alert, self.downloads, self.explorer])
        self.add_class("dicomnb-dialog")
        self._shown_in: int | None = None

    @property
    def pages(self) -> dict[str, Tab]:
        """The tabs by title."""
        return dict(zip(TAB_TITLES, (self.local, self.zip, self.dicomdir, self.drop, self.query), strict=True))

    def select(self, title: str) -> Tab:
        """Show the tab titled ``title``; return it."""
        self.tabs.selected_index = TAB_TITLES.index(title)
        return self.pages[title]

    def imported(self, report: ImportReport, open_after: bool = False) -> None:
        """Show what an import brought: the alert, the explorer, and (``open_after``) its first series."""
        self.report = report
        self.alert.show(*describe_report(report))
        self.explorer.refresh()
        first = next((r.SeriesInstanceUID for r in report.instances if r.SeriesInstanceUID), None)
        if open_after and first:
            self.explorer.open_series(first)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every tab's work to end (False on timeout)."""
        return all(tab.wait(timeout) for tab in self.pages.values())

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # dialog() displayed it already: the same cell's result would show a second copy
        if self._shown_in is not None and self._shown_in == _execution_count():
            return {}
        return super()._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        counts = f"{len(self.catalog)} instances in the catalog"
        return f"<dicomnb import dialog: {counts}>"

    def close(self) -> None:
        """Close the dialog: the tabs' work stops, a drop still arriving is removed, the download
        panel stops following the downloads (they go on), and every widget of it is closed."""
        panel = getattr(self, "downloads", None)  # absent when the dialog failed half-made
        if panel is not None:
            panel.close()
        super().close()
        close_children(self)


def dialog(*, display: bool = True) -> ImportDialog:
    """Open the import dialog in the notebook (and return it, to drive it from Python too).

    >>> d = dicomnb.dialog()
    >>> d.local.path.value = "/data/ct"; d.local.import_button.click()
    """
    made = ImportDialog()
    if display:
        from IPython.display import display as show_it

        show_it(made)
        made._shown_in = _execution_count()
    return made


def _execution_count() -> int | None:
    """The number of the cell running now (None outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets brings IPython
        return None
    shell = get_ipython()
    return None if shell is None else int(shell.execution_count)
