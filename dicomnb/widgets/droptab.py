"""The import dialog's Drop tab: a drop zone for files and folders, imported as they land.

A drop received in full (see :mod:`dicomnb.widgets.dropzone`) goes through the core's drop
rules (:func:`~dicomnb.core.drop.check_drop`) and is imported like a local folder, off the
kernel's main thread; the dialog's alert shows the import's report, or the rule's message
when the drop is none of the three accepted cases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dicomnb.core.deps import import_optional_dependency
from dicomnb.core.report import ImportReport
from dicomnb.widgets.common import Alert, Tab, plural
from dicomnb.widgets.dropzone import DropZone, StagedDrop, import_staged

if TYPE_CHECKING:
    import threading

    import ipywidgets as widgets
else:
    widgets = import_optional_dependency("ipywidgets", "notebook")

__all__ = ["DropTab"]


class DropTab(Tab):
    """The Drop tab: :class:`~dicomnb.widgets.dropzone.DropZone` and "Open after import".

    CSS classes: ``dicomnb-drop-tab``, the zone's (``dicomnb-drop-zone``...) and
    ``dicomnb-drop-open`` (the checkbox).

    Parameters
    ----------
    alert : Alert
        The dialog's alert: a refused drop's message, the import's report.
    imported : callable, optional
        The dialog's ``imported(report, open_after)``.

    Attributes
    ----------
    zone : DropZone
        The drop zone (a script feeds it the browser's messages with ``zone.receive``).
    open_after : Checkbox
        Render the first imported series once the drop is imported.
    """

    title = "Drop"

    def __init__(self, *, alert: Alert, imported: Callable[[ImportReport, bool], object] | None = None) -> None:
        self.zone = DropZone(on_drop=self._import, on_error=alert.error)
        self.open_after = widgets.Checkbox(value=False, description="Open after import", indent=False)
        self.open_after.add_class("dicomnb-drop-open")
        super().__init__([self.zone, self.open_after], alert=alert, imported=imported, css="dicomnb-drop-tab")

    def _import(self, staged: StagedDrop) -> None:
        open_after = self.open_after.value
        self.alert.clear()
        self.zone.status = f"Importing {plural(staged.count, 'file')}…"

        def work(cancel: threading.Event) -> ImportReport:
            try:
                return import_staged(staged, progress=self.progress, cancel=cancel)
            finally:
                self.zone.status = ""

        self.run("Import of the dropped files", work, lambda report: self.imported(report, open_after))
