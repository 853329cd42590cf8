"""What every part of the import dialog shares: buttons, the alert, and work off the main thread.

- :func:`button`, :func:`show`, :func:`shown`: a button with its ``dicomnb-...`` CSS class
  (the browser tests' selector), and showing or hiding a widget; :func:`close_tree` closes a
  widget with all it holds.
- :class:`Alert`: a visible message ("3 DICOM files cannot be read", "Connection to ORTHANC
  failed: ...") with its details on demand and, when there is one, an action button
  ("Download the missing files again").
- :class:`Worker`: runs one piece of work at a time off the kernel's main thread, so the
  notebook never freezes; a new piece of work cancels the one running (its ``cancel``
  event is set and its result dropped). A :class:`~dicomnb.errors.DicomnbError` it raises
  shows in the alert; :meth:`Worker.wait` lets a script (or a test) wait for it.

Widgets are updated from the worker thread by setting their traits: ipywidgets sends each
change to the front end as a comm message, which is safe from any thread.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from dicomnb.core.deps import import_optional_dependency
from dicomnb.core.errors import DicomnbError
from dicomnb.core.report import ImportReport

if TYPE_CHECKING:
    import ipywidgets as widgets
else:
    widgets = import_optional_dependency("ipywidgets", "notebook")

__all__ = ["Alert", "Tab", "Task", "Worker", "button", "close_children", "close_tree", "describe_report", "plural",
           "show", "shown"]

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

_HIDDEN, _SHOWN = "none", ""
#: How many lines of details an alert lists before "... and N more".
DETAILS_SHOWN = 200


def button(description: str, css: str, tooltip: str = "", **options: Any) -> widgets.Button:
    """A button sized to its label, carrying the CSS class ``css``."""
    made = widgets.Button(description=description, tooltip=tooltip or description,
                          layout=widgets.Layout(width="auto"), **options)
    made.add_class(css)
    return made


def show(widget: widgets.DOMWidget, visible: bool) -> None:
    """Show or hide ``widget`` (its ``layout.display``)."""
    widget.layout.display = _SHOWN if visible else _HIDDEN


def shown(widget: widgets.DOMWidget) -> bool:
    """True unless ``widget`` is hidden (``layout.display`` ``"none"``)."""
    return widget.layout.display != _HIDDEN


def close_children(widget: widgets.Widget) -> None:
    """Close what ``widget`` holds: its children (each with all it holds), its layout and its style.

    Closing a widget closes its own comm only: its layout and style stay registered in the
    kernel (and its children with theirs) until they are closed too.
    """
    for child in getattr(widget, "children", ()):
        close_tree(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if isinstance(part, widgets.Widget):
            part.close()


def close_tree(widget: widgets.Widget) -> None:
    """Close ``widget`` and everything it holds (see :func:`close_children`)."""
    widget.close()
    close_children(widget)


def plural(count: int, one: str, many: str | None = None) -> str:
    """``"1 study"``, ``"3 studies"``."""
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def describe_report(report: ImportReport) -> tuple[str, str, list[str]]:
    """What an import's alert says: ``(message, level, details)``.

    The level is ``"success"`` when everything read was filed, ``"warning"`` when files
    could not be read or DICOMDIR records name missing files.
    """
    counts = report.counts()
    parts = [f"Imported {plural(counts['instances'], 'instance')} in {plural(counts['series'], 'series', 'series')}"
             f" of {plural(counts['studies'], 'study', 'studies')}"
             + (f" ({counts['added']} new)" if counts["added"] != counts["instances"] else "")]
    details: list[str] = []
    if report.errors:
        parts.append(f"{plural(len(report.errors), 'DICOM file')} cannot be read")
        details += [f"{e.path}{'::' + e.member if e.member else ''}: {e.error}: {e.message}" for e in report.errors]
    if report.missing:
        parts.append(f"{plural(len(report.missing), 'file')} named by the DICOMDIR "
                     f"{'is' if len(report.missing) == 1 else 'are'} missing")
        details += [f"{m.ReferencedFileID}: {m.reason}" for m in report.missing]
    if report.images:
        parts.append(plural(len(report.images), "image"))
    if report.attachments:
        parts.append(plural(len(report.attachments), "attachment"))
    if not counts["instances"]:
        parts[0] = "No DICOM instance was found" + (f" ({plural(report.skipped, 'other file')} skipped)"
                                                    if report.skipped else "")
    level = "warning" if report.errors or report.missing or not counts["instances"] else "success"
    if report.stopped:
        parts[0] = "Import stopped: " + parts[0][0].lower() + parts[0][1:]
        level = "warning"
    return "; ".join(parts) + ".", level, details


def describe_progress(report: ImportReport, seconds: float) -> str:
    """What a running import's busy line says: ``"Reading… 1,234 instances, 2 unreadable (3 s)"``."""
    parts = [plural(len(report.instances), "instance")]
    if report.errors:
        parts.append(f"{len(report.errors):,} unreadable")
    if report.skipped:
        parts.append(f"{report.skipped:,} other files skipped")
    if report.images or report.attachments:
        parts.append(plural(len(report.images) + len(report.attachments), "other file") + " listed")
    return f"Reading… {', '.join(parts)} ({seconds:.0f} s)"


class Alert(widgets.VBox):
    """A message shown in the dialog, its details on demand, and an optional action button.

    ``alert.message``, ``alert.level`` (``"info"``, ``"success"``, ``"warning"``,
    ``"error"``) and ``alert.details`` hold what it shows; CSS classes ``dicomnb-alert``
    (plus ``dicomnb-alert-<level>``), ``dicomnb-alert-message``, ``dicomnb-alert-details-toggle``,
    ``dicomnb-alert-details``, ``dicomnb-alert-action``.
    """

    def __init__(self) -> None:
        self.message, self.level = "", ""
        self.details: list[str] = []
        self._text = widgets.HTML()
        self._text.add_class("dicomnb-alert-message")
        self._toggle = widgets.ToggleButton(description="Details", value=False, layout=widgets.Layout(width="auto"))
        self._toggle.add_class("dicomnb-alert-details-toggle")
        self._details = widgets.HTML()
        self._details.add_class("dicomnb-alert-details")
        self.action = button("", "dicomnb-alert-action")
        self._action_callback: Callable[[], object] | None = None
        self.action.on_click(lambda _: self._act())
        self._close = button("×", "dicomnb-alert-close", tooltip="Dismiss")
        self._close.on_click(lambda _: self.clear())
        self._toggle.observe(lambda change: show(self._details, bool(change["new"])), names="value")
        super().__init__([widgets.HBox([self._text, self._toggle, self.action, self._close]), self._details])
        self.add_class("dicomnb-alert")
        self.clear()

    def show(self, message: str, level: str = "error", details: Sequence[str] = (),
             action: tuple[str, Callable[[], object]] | None = None) -> None:
        """Show ``message``; ``details`` behind a "Details" toggle; ``action`` is ``(label, callback)``."""
        for old in ("info", "success", "warning", "error"):
            self.remove_class(f"dicomnb-alert-{old}")
        self.message, self.level, self.details = message, level, list(details)
        self.add_class(f"dicomnb-alert-{level}")
        colour = {"error": "#b71c1c", "warning": "#8a5a00", "success": "#1b5e20"}.get(level, "inherit")
        self._text.value = f'<span style="color:{colour}">{html.escape(message)}</span>'
        listed = self.details[:DETAILS_SHOWN]
        more = len(self.details) - len(listed)
        self._details.value = ("<pre style='max-height:12em;overflow:auto;white-space:pre-wrap'>"
                               + html.escape("\n".join(listed + ([f"... and {more} more"] if more > 0 else [])))
                               + "</pre>")
        self._toggle.value = False
        show(self._toggle, bool(self.details))
        show(self._details, False)
        self._action_callback = action[1] if action else None
        self.action.description = action[0] if action else ""
        self.action.tooltip = self.action.description
        show(self.action, action is not None)
        show(self, True)

    def error(self, exc: BaseException) -> None:
        """Show a failure: the error's own message says what happened and what to do."""
        self.show(str(exc), "error")

    def clear(self) -> None:
        """Hide the alert."""
        self.message, self.level, self.details = "", "", []
        self._action_callback = None
        show(self, False)

    def _act(self) -> None:
        callback = self._action_callback
        self.clear()
        if callback is not None:
            callback()


class Task(Generic[T]):
    """One piece of work handed to a :class:`Worker`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cancel = threading.Event()
        self.finished = threading.Event()
        self.result: T | None = None
        self.exception: BaseException | None = None


class Worker:
    """Runs one piece of work at a time off the main thread; a new one cancels the running one.

    ``busy`` (an optional widget) is shown while work runs. Errors of the dicomnb tree show
    in ``alert``; anything else is logged and shown too (a bug, named as such).
    """

    def __init__(self, alert: Alert, busy: widgets.DOMWidget | None = None) -> None:
        self.alert = alert
        self.busy = busy
        self._lock = threading.Lock()
        self._task: Task[Any] | None = None    # the work whose result counts
        self._last: Task[Any] | None = None    # the work started last, cancelled or not
        if busy is not None:
            show(busy, False)

    @property
    def running(self) -> bool:
        """True while a piece of work runs."""
        task = self._task
        return task is not None and not task.finished.is_set()

    def run(self, name: str, work: Callable[[threading.Event], T],
            done: Callable[[T], object] | None = None) -> Task[T]:
        """Run ``work(cancel)`` in a thread, then ``done(result)`` unless a newer run replaced it."""
        task: Task[T] = Task(name)
        with self._lock:
            if self._task is not None:
                self._task.cancel.set()
            self._task = self._last = task
            if self.busy is not None:
                show(self.busy, True)
        threading.Thread(target=self._run, args=(task, work, done), name=f"dicomnb-{name}", daemon=True).start()
        return task

    def _run(self, task: Task[T], work: Callable[[threading.Event], T], done: Callable[[T], object] | None) -> None:
        try:
            task.result = work(task.cancel)
            if done is not None and self._task is task:
                done(task.result)
        except DicomnbError as exc:
            task.exception = exc
            if self._task is task:
                self.alert.error(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not vanish in a thread
            task.exception = exc
            LOGGER.exception("%s failed", task.name)
            if self._task is task:
                self.alert.show(f"{task.name} failed unexpectedly: {type(exc).__name__}: {exc}", "error")
        finally:
            # under the lock: a run started meanwhile shows the busy line after this hides it
            with self._lock:
                if self._task is task and self.busy is not None:
                    show(self.busy, False)
            # set last: whoever waits for the task finds the busy line hidden
            task.finished.set()

    def stop(self) -> None:
        """Ask the running work to stop early; unlike :meth:`cancel`, its ``done`` still runs."""
        task = self._task
        if task is not None:
            task.cancel.set()

    def cancel(self) -> None:
        """Cancel the running work (its result is dropped)."""
        with self._lock:
            task, self._task = self._task, None
            if self.busy is not None:
                show(self.busy, False)
        if task is not None:
            task.cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the work started last (and its ``done``) to end, also once cancelled (its
        thread may still be on its way out); False on timeout."""
        task = self._last
        return task is None or task.finished.wait(timeout)


class Tab(widgets.VBox):
    """One source tab of the dialog: its controls, its :class:`Worker`, the dialog's alert.

    ``imported(report, open_after)`` is the dialog's: it shows the import's alert, refreshes
    the explorer and, when ``open_after``, renders the first imported series.
    """

    #: The tab's title (exactly as the dialog shows it).
    title = ""

    def __init__(self, children: Sequence[widgets.Widget], *, alert: Alert,
                 imported: Callable[[ImportReport, bool], object] | None = None, css: str = "") -> None:
        super().__init__([*children])
        self.alert = alert
        self.status = widgets.HTML("<i>Working…</i>")
        self.status.add_class("dicomnb-busy-status")
        self.stop_button = button("Stop", "dicomnb-stop", "Stop here: what was imported so far stays")
        self.stop_button.on_click(self._stop)
        self.busy = widgets.HBox([self.status, self.stop_button])
        self.busy.add_class("dicomnb-busy")
        self.worker = Worker(alert, self.busy)
        self._imported = imported
        self._started = time.monotonic()
        if css:
            self.add_class(css)
        self.children = (*children, self.busy)

    def run(self, name: str, work: Callable[[threading.Event], T],
            done: Callable[[T], object] | None = None) -> Task[T]:
        """Run ``work(cancel)`` on this tab's worker, its busy line reset (see :meth:`Worker.run`)."""
        self.working()
        return self.worker.run(name, work, done)

    def _stop(self, _: object = None) -> None:
        self.worker.stop()

    def working(self, message: str = "Working…") -> None:
        """Show ``message`` on the busy line (it shows while work runs)."""
        self._started = time.monotonic()
        self.status.value = f"<i>{html.escape(message)}</i>"

    def progress(self, report: ImportReport) -> None:
        """An import's ``progress`` callback: the busy line counts what was read so far."""
        self.status.value = f"<i>{html.escape(describe_progress(report, time.monotonic() - self._started))}</i>"

    def imported(self, report: ImportReport, open_after: bool = False) -> None:
        """Hand an import's report to the dialog (or show it in the alert when there is none)."""
        if self._imported is not None:
            self._imported(report, open_after)
        else:
            self.alert.show(*describe_report(report))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for this tab's work to end (False on timeout)."""
        return self.worker.wait(timeout)

    def close(self) -> None:
        """Stop this tab's work and close its widgets."""
        worker = getattr(self, "worker", None)  # absent when the tab failed half-made
        if worker is not None:
            worker.cancel()
        super().close()
        close_children(self)
