"""The import dialog's Drop tab: a drop zone for files and folders, imported as they land.

A drop received in full (see :mod:`dicomnb.widgets.dropzone`) goes through the core's drop
rules (:func:`~dicomnb.core.drop.check_drop`) and is imported like a local folder, off the
kernel's main thread; the dialog's alert shows the import's report, or the rule's message
when the drop is none of the three accepted cases. A drop that lands while another is
being imported waits for it: drops are imported one after the other, in the order they
landed. **Stop** stops the import under way and removes the drops still waiting.
"""

from __future__ import annotations

import shutil
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from dicomnb.core.deps import import_optional_dependency
from dicomnb.core.errors import DicomnbError
from dicomnb.core.report import ImportReport
from dicomnb.widgets.common import Alert, Tab, plural
from dicomnb.widgets.dropzone import DropZone, StagedDrop, import_staged

if TYPE_CHECKING:
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
        self._lock = threading.Lock()
        self._waiting: deque[tuple[StagedDrop, bool]] = deque()  # drops received, not imported yet
        self._importing = False  # a run of the worker imports the drops waiting
        self.zone = DropZone(on_drop=self._import, on_error=alert.error)
        self.open_after = widgets.Checkbox(value=False, description="Open after import", indent=False)
        self.open_after.add_class("dicomnb-drop-open")
        super().__init__([self.zone, self.open_after], alert=alert, imported=imported, css="dicomnb-drop-tab")

    def _import(self, staged: StagedDrop) -> None:
        """Import a drop received in full; while another is imported, it waits for it."""
        with self._lock:
            self._waiting.append((staged, self.open_after.value))
            if self._importing:
                self.zone.status = f"Received {plural(staged.count, 'file')}: imported after the drop before it."
                return
            self._importing = True
        self.alert.clear()
        self.run("Import of the dropped files", self._import_waiting)

    def _import_waiting(self, cancel: threading.Event) -> None:
        """Import the drops waiting, in order, until none is left or the import is stopped."""
        while True:
            with self._lock:  # the check and the end are one step: a drop landing now is not left waiting
                if cancel.is_set() or not self._waiting:
                    dropped = [staged for staged, _ in self._waiting]
                    self._waiting.clear()
                    self._importing = False
                    break
                staged, open_after = self._waiting.popleft()
            try:
                self._import_one(staged, open_after, cancel)
            except BaseException:
                with self._lock:  # a bug: the next drop starts a new run, with those waiting
                    self._importing = False
                raise
        for staged in dropped:  # stopped: not imported, so not kept
            shutil.rmtree(staged.folder, ignore_errors=True)
        if dropped:
            self.zone.status = f"Stopped: {plural(len(dropped), 'drop')} not imported; drop again to import."

    def _import_one(self, staged: StagedDrop, open_after: bool, cancel: threading.Event) -> None:
        self.working(f"Importing {plural(staged.count, 'dropped file')}…")
        self.zone.status = f"Importing {plural(staged.count, 'file')}…"
        try:
            report = import_staged(staged, progress=self.progress, cancel=cancel)
        except DicomnbError as exc:  # this drop only: those waiting are imported still
            if self.worker.running:
                self.alert.error(exc)
            return
        finally:
            self.zone.status = ""
        if self.worker.running:  # not when the work was cancelled (the dialog closed)
            self.imported(report, open_after)
