"""The download panel: every download job's progress, with pause, resume, cancel and retry.

>>> dicomnb.downloads.panel()        # or DownloadPanel(dicomnb.downloads)

An overall row (a bar over all jobs, "40 of 120 instances, 3.2 MB, 1.2 MB/s, 5 s left",
Pause all, Resume all, "Download the missing files again", Clear finished) sits above one
row per series job (its description and node, a bar of instances done out of the total,
its state, Pause/Resume, Cancel, and "Download the missing files again" when instances are
missing). Every widget carries a ``dicomnb-download...`` CSS class for browser tests.

The panel shows what :meth:`DownloadManager.status
<dicomnb.core.downloads.DownloadManager.status>` reports and calls the manager's verbs; it
holds no download logic of its own. The manager calls :meth:`DownloadPanel.refresh` from
a background thread, at most every :data:`~dicomnb.core.downloads.UPDATE_INTERVAL` s; a
refresh only sets values on the widgets that exist (a row is made when its job first
appears and dropped when the job goes), so the front end gets a few small messages per
update and the transfer never waits for the panel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from dicomnb.core.deps import import_optional_dependency
from dicomnb.core.downloads import (
    COMPLETE,
    INCOMPLETE,
    INTERRUPTED,
    PAUSED,
    QUEUED,
    RUNNING,
    DownloadManager,
    DownloadProgress,
    JobStatus,
    human_size,
)
from dicomnb.core.errors import DicomnbError
from dicomnb.widgets.common import button, close_children, close_tree, show, shown

if TYPE_CHECKING:
    import ipywidgets as widgets
else:
    widgets = import_optional_dependency("ipywidgets", "notebook")

__all__ = ["RETRY_LABEL", "DownloadPanel", "SeriesRow", "shown", "summary_text"]

#: The label of the buttons that fetch the missing instances of incomplete jobs.
RETRY_LABEL = "Download the missing files again"

#: States whose job a Pause stops, and states a Resume starts again.
_PAUSABLE = (QUEUED, RUNNING)
_RESUMABLE = (PAUSED, INTERRUPTED)
#: States with instances missing after a run that ended (the retry button's).
_RETRYABLE = (INCOMPLETE, INTERRUPTED)
_BAR_STYLES = {COMPLETE: "success", INCOMPLETE: "danger", PAUSED: "warning", INTERRUPTED: "warning"}


def summary_text(progress: DownloadProgress) -> str:
    """``"40 of 120 instances, 3.2 MB, 1.2 MB/s, 5 s left"`` (``"No downloads."`` without jobs)."""
    if not progress.jobs:
        return "No downloads."
    text = f"{progress.done} of {progress.total} instance{'' if progress.total == 1 else 's'}, {human_size(progress.bytes)}"
    if progress.rate:
        text += f", {human_size(progress.rate)}/s"
    eta = progress.eta
    if eta is not None:
        text += f", {eta:.0f} s left"
    return text


def _bar_style(states: Iterable[str]) -> str:
    """The overall bar's style: danger if a job is incomplete, else info while one is under way,
    else warning if one is paused, else success."""
    styles = {_BAR_STYLES.get(state, "") for state in states}
    for style in ("danger", "", "warning", "success"):
        if style in styles:
            return style
    return ""


class SeriesRow(widgets.HBox):
    """One job's row: description and node, bar, state, Pause/Resume, Cancel, retry.

    Parameters
    ----------
    job_id : str
        The job it shows.

    Attributes
    ----------
    label, bar, state, error : Label, IntProgress, Label, Label
        ``"CT 3: Chest 5 mm — orthanc"``; instances done out of the total; the state
        (:attr:`JobStatus.text <dicomnb.core.downloads.JobStatus.text>`); the last error.
    toggle, cancel, retry : Button
        "Pause" (queued, running) or "Resume" (paused, interrupted); "Cancel" ("Remove" once
        complete); :data:`RETRY_LABEL` (incomplete, interrupted).
    status : JobStatus or None
        What it shows.
    """

    def __init__(self, job_id: str) -> None:
        super().__init__(layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        self.add_class("dicomnb-download-row")
        self.job_id = job_id
        self.status: JobStatus | None = None
        self.label = widgets.Label(layout=widgets.Layout(width="18em"))
        self.label.add_class("dicomnb-download-label")
        self.bar = widgets.IntProgress(min=0, max=1, value=0, layout=widgets.Layout(width="14em"))
        self.bar.add_class("dicomnb-download-bar")
        self.state = widgets.Label(layout=widgets.Layout(min_width="16em"))
        self.state.add_class("dicomnb-download-state")
        self.toggle = button("Pause", "dicomnb-download-pause")
        self.cancel = button("Cancel", "dicomnb-download-cancel")
        self.retry = button(RETRY_LABEL, "dicomnb-download-retry", "Fetch only the instances that did not arrive")
        self.error = widgets.Label()
        self.error.add_class("dicomnb-download-error")
        self.children = (self.label, self.bar, self.state, self.toggle, self.cancel, self.retry, self.error)

    def update(self, status: JobStatus) -> None:
        """Show ``status`` (only values change: the widgets stay)."""
        self.status = status
        label = f"{status.description} — {status.node}"
        self.label.value = label
        self.label.tooltip = f"{label} ({status.method}), series {status.series_uid}"
        # the maximum first: a value above the old maximum would be clipped to it
        self.bar.max = max(status.total, 1)
        self.bar.value = min(status.done, self.bar.max)
        self.bar.bar_style = _BAR_STYLES.get(status.state, "")
        self.bar.tooltip = f"{status.done} of {status.total} instances, {human_size(status.bytes)}"
        self.state.value = status.text
        self.toggle.description = "Resume" if status.state in _RESUMABLE else "Pause"
        self.toggle.tooltip = ("Start again: only what is missing is fetched" if status.state in _RESUMABLE
                               else "Stop after the instances under way; what arrived stays")
        show(self.toggle, status.state in _PAUSABLE + _RESUMABLE)
        finished = status.state == COMPLETE
        self.cancel.description = "Remove" if finished else "Cancel"
        self.cancel.tooltip = ("Forget this download; its files stay" if finished
                               else "Stop and forget this download; what arrived stays in the catalog")
        show(self.retry, status.state in _RETRYABLE)
        self.error.value = status.error
        show(self.error, bool(status.error))


class DownloadPanel(widgets.VBox):
    """The download panel of a download manager (``dicomnb.downloads.panel()``).

    It subscribes to the manager when made (and shows its jobs at once) and unsubscribes
    when closed. Buttons call the manager; its errors show in :attr:`alert`, never as a
    traceback. Cancel and Clear finished wait for the jobs to stop, so they run in a
    thread of their own (:meth:`wait_actions` waits for them).

    Parameters
    ----------
    manager : DownloadManager
        The jobs to show (``dicomnb.downloads``).

    Attributes
    ----------
    rows : dict of str to SeriesRow
        The jobs' rows, by job ID, oldest job first.
    overall, summary : IntProgress, Label
        All jobs: instances done out of the total; :func:`summary_text`.
    pause_all, resume_all, retry_all, clear_finished : Button
        Every job: pause, resume, fetch what is missing (shown when a job is incomplete),
        forget the complete ones (their files stay); disabled when no job is concerned.
    alert : Label
        The manager's last error (hidden when there is none).
    body : VBox
        The rows (its children change only when jobs come or go).
    refreshes : int
        How many times the panel was updated (the manager allows ~10 a second).
    """

    def __init__(self, manager: DownloadManager) -> None:
        super().__init__()
        self.add_class("dicomnb-downloads")
        self.manager = manager
        self.refreshes = 0
        self.rows: dict[str, SeriesRow] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._actions: list[threading.Thread] = []
        self.overall = widgets.IntProgress(min=0, max=1, value=0, layout=widgets.Layout(width="14em"))
        self.overall.add_class("dicomnb-downloads-bar")
        self.summary = widgets.Label()
        self.summary.add_class("dicomnb-downloads-summary")
        self.pause_all = button("Pause all", "dicomnb-downloads-pause-all")
        self.resume_all = button("Resume all", "dicomnb-downloads-resume-all")
        self.retry_all = button(RETRY_LABEL, "dicomnb-downloads-retry-all",
                                 "Fetch only the instances that did not arrive, for every incomplete download")
        self.clear_finished = button("Clear finished", "dicomnb-downloads-clear",
                                      "Forget the complete downloads (their files stay)")
        self.alert = widgets.Label()
        self.alert.add_class("dicomnb-downloads-alert")
        show(self.alert, False)
        header = widgets.HBox([self.overall, self.summary, self.pause_all, self.resume_all, self.retry_all,
                               self.clear_finished],
                              layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        header.add_class("dicomnb-downloads-header")
        self.body = widgets.VBox()
        self.body.add_class("dicomnb-downloads-rows")
        self.children = (header, self.alert, self.body)

        self.pause_all.on_click(lambda _: self._act(self.manager.pause))
        self.resume_all.on_click(lambda _: self._act(self.manager.resume))
        self.retry_all.on_click(lambda _: self._act(self.manager.retry_missing))
        self.clear_finished.on_click(lambda _: self._act(self.manager.clear, background=True))
        # subscribed before the first look, so that no change falls between the two
        self._unsubscribe: Callable[[], None] | None = manager.subscribe(self.refresh)
        try:
            self.refresh()
        except BaseException:
            self.close()
            raise

    # -- showing ----------------------------------------------------------------------------------
    def refresh(self, progress: DownloadProgress | None = None) -> None:
        """Show ``progress`` (default: the manager's status now); the manager's listener."""
        if progress is None:
            progress = self.manager.status()
        with self._lock:
            if self._closed:
                return
            self.refreshes += 1
            ids = [status.id for status in progress.jobs]
            for gone in set(self.rows) - set(ids):
                close_tree(self.rows.pop(gone))
            for status in progress.jobs:
                row = self.rows.get(status.id)
                if row is None:
                    row = self.rows[status.id] = self._row(status.id)
                row.update(status)
            if list(self.rows) != ids:  # a new job is not always the newest: keep the manager's order
                self.rows = {job_id: self.rows[job_id] for job_id in ids}
            if [row.job_id for row in self.body.children] != ids:
                self.body.children = tuple(self.rows.values())
            self.overall.max = max(progress.total, 1)
            self.overall.value = min(progress.done, self.overall.max)
            self.overall.bar_style = _bar_style(status.state for status in progress.jobs)
            self.summary.value = summary_text(progress)
            present = {status.state for status in progress.jobs}
            show(self.retry_all, bool(present.intersection(_RETRYABLE)))
            self.pause_all.disabled = not present.intersection(_PAUSABLE)
            self.resume_all.disabled = not present.intersection(_RESUMABLE + (INCOMPLETE,))
            self.clear_finished.disabled = COMPLETE not in present

    def _row(self, job_id: str) -> SeriesRow:
        row = SeriesRow(job_id)
        row.toggle.on_click(lambda _: self._toggle(job_id))
        row.cancel.on_click(lambda _: self._act(lambda: self.manager.cancel([job_id]), background=True))
        row.retry.on_click(lambda _: self._act(lambda: self.manager.retry_missing([job_id])))
        return row

    def _show_alert(self, message: str) -> None:
        with self._lock:
            if self._closed:
                return
            self.alert.value = message
            show(self.alert, bool(message))

    # -- acting -----------------------------------------------------------------------------------
    def _toggle(self, job_id: str) -> None:
        row = self.rows.get(job_id)
        state = row.status.state if row is not None and row.status is not None else ""
        if state in _PAUSABLE:
            self._act(lambda: self.manager.pause([job_id]))
        else:
            self._act(lambda: self.manager.resume([job_id]))

    def _act(self, verb: Callable[[], object], background: bool = False) -> None:
        """Run a manager verb: its error goes to the alert, and the panel shows the result at once.

        ``background``: for the verbs that wait for jobs to stop (cancel), which would hold
        the kernel up meanwhile.
        """
        if not background:
            self._run(verb)
            return
        thread = threading.Thread(target=self._run, args=(verb,), name="dicomnb-download-action", daemon=True)
        with self._lock:
            self._actions = [t for t in self._actions if t.is_alive()] + [thread]
        thread.start()

    def _run(self, verb: Callable[[], object]) -> None:
        try:
            verb()
        except DicomnbError as exc:
            self._show_alert(str(exc))
        else:
            self._show_alert("")
        self.refresh()

    def wait_actions(self, timeout: float | None = None) -> bool:
        """Wait until the actions running in the background (cancel, clear) end; True when they did."""
        with self._lock:
            actions = list(self._actions)
        for thread in actions:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in actions)

    def close(self) -> None:
        """Stop following the manager and close every widget of the panel."""
        lock = getattr(self, "_lock", None)
        if lock is None:  # __init__ never got this far (close is also called on garbage collection)
            super().close()
            return
        with lock:
            if self._closed:
                return
            self._closed = True
            unsubscribe, self._unsubscribe = getattr(self, "_unsubscribe", None), None
        if unsubscribe is not None:
            unsubscribe()
        super().close()
        close_children(self)
