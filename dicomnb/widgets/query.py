"""The import dialog's Query/Retrieve tab: search an archive, pick studies or series, import them.

>>> tab = QueryTab(alert=Alert())
>>> tab.node.value = "orthanc"; tab.criteria.text.value = "Doe*"
>>> tab.search(); tab.wait(30)           # dicomnb.query off the main thread
>>> tab.results.message                  # "3 studies from orthanc in 0.05 s"
>>> tab.table.select_study(uid); tab.import_selected(); tab.wait(300)

From top to bottom: the archive (saved DIMSE and DICOMweb nodes, and the embedded demo
archive, started on first use), the retrieve method (C-GET, C-MOVE, WADO-URI; none to choose
for DICOMweb), our calling AE title, and "More options" (our Storage SCP port and the node
editor); the search criteria (:class:`~dicomnb.widgets.criteria.CriteriaForm`); the limit (0:
none; it is also the page size) and the page of the query; Search, Clear and Import; the
result table (:class:`~dicomnb.widgets.results.ResultsTable`).

Search runs :func:`dicomnb.query` in the tab's :class:`~dicomnb.widgets.common.Worker`: a new
Search cancels the one running (its cancel event is set), and so does Clear, which also
applies the preset "Empty" and empties the table. Expanding a study lists its series (a
SERIES-level query, one worker per study). Import retrieves what is selected
(:func:`dicomnb.retrieve`, in background threads, a few studies at a time), so each series
becomes a download job of :data:`dicomnb.downloads` and shows in the download panel; when it
ends the dialog is told what was imported, and a failure shows in the alert, offering
"Download the missing files again" when download jobs were left incomplete. Every widget
carries a ``dicomnb-qr-...``, ``dicomnb-criteria-...``, ``dicomnb-nodes-...`` or
``dicomnb-results-...`` CSS class for the browser tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import dicomnb
from dicomnb.core.deps import import_optional_dependency
from dicomnb.core.downloads import INCOMPLETE, INTERRUPTED, DownloadManager
from dicomnb.core.errors import DicomnbError, RetrieveIncomplete
from dicomnb.core.query import QueryResult
from dicomnb.core.report import ImportReport
from dicomnb.core.retrieval import RetrieveResult
from dicomnb.widgets.common import Alert, Tab, Task, Worker, button, plural, show
from dicomnb.widgets.criteria import CriteriaForm
from dicomnb.widgets.downloads import RETRY_LABEL
from dicomnb.widgets.nodes import (
    METHOD_LABELS,
    CallingEditor,
    NodeEditor,
    archive_options,
    demo_name,
    method_options,
    resolve_archive,
    saved_node,
)
from dicomnb.widgets.results import ResultsTable

if TYPE_CHECKING:
    import ipywidgets as widgets
else:
    widgets = import_optional_dependency("ipywidgets", "notebook")

__all__ = ["DEFAULT_LIMIT", "IMPORT_PARALLEL", "QueryTab"]

LOGGER = logging.getLogger(__name__)

#: The limit a search starts with (matches; 0 is no limit).
DEFAULT_LIMIT = 50
#: Studies retrieved at once by an import (their series share the download manager's bounds).
IMPORT_PARALLEL = 3

_Outcome = RetrieveResult | BaseException | None


class QueryTab(Tab):
    """The Query/Retrieve tab of the import dialog.

    Parameters
    ----------
    alert : Alert
        The dialog's alert: errors ("... orthanc (ORTHANC@127.0.0.1:4242): connection
        refused ...") and what an import did.
    imported : callable, optional
        The dialog's ``imported(report, open_after)``, told what an import brought.
    downloads : DownloadManager
        The download jobs (``dicomnb.downloads``): "Download the missing files again" calls
        its ``retry_missing``.

    Attributes
    ----------
    node, method : Dropdown
        The archive (a node's name; the demo archive is ``"demo"``) and the retrieve method
        (``dicomnb-qr-node``, ``dicomnb-qr-method``; the latter hidden for DICOMweb).
    calling : CallingEditor
        Our AE title (``dicomnb-qr-calling``) and Storage SCP port (``dicomnb-qr-calling-port``).
    more, editor : ToggleButton, NodeEditor
        "More options" (``dicomnb-qr-more``) and the node editor it shows.
    criteria : CriteriaForm
        The search criteria and presets.
    limit, page : IntText, BoundedIntText
        ``dicomnb-qr-limit`` (0: no limit; also the page size) and ``dicomnb-qr-page``.
    search_button, clear_button, import_button : Button
        ``Search``, ``Clear``, ``Import`` (``dicomnb-qr-search``, ``-clear``, ``-import``).
    table : ResultsTable
        The studies found (``dicomnb-results``).
    results : QueryResult or None
        The last search's result.
    imports : list of RetrieveResult or BaseException
        What the last import's retrieves gave (a result or an error per study).
    """

    title = "Query/Retrieve"

    def __init__(self, *, alert: Alert, imported: Callable[[ImportReport, bool], object] | None = None,
                 downloads: DownloadManager = dicomnb.downloads) -> None:
        self.downloads = downloads
        self.results: QueryResult | None = None
        self.imports: list[_Outcome] = []
        self._quiet = False
        self._lock = threading.Lock()
        self._expansions: dict[str, Worker] = {}
        self._import_threads: list[threading.Thread] = []

        self.node = widgets.Dropdown(options=[], description="Archive", layout=widgets.Layout(width="26em"))
        self.node.add_class("dicomnb-qr-node")
        self.method = widgets.Dropdown(options=method_options(None), description="Retrieve with",
                                       tooltip="How Import fetches the files", layout=widgets.Layout(width="20em"),
                                       style={"description_width": "initial"})
        self.method.add_class("dicomnb-qr-method")
        self.calling = CallingEditor(alert)
        self.more = widgets.ToggleButton(value=False, description="More options",
                                         tooltip="Our port, and the nodes: add, change, remove, test",
                                         layout=widgets.Layout(width="auto"))
        self.more.add_class("dicomnb-qr-more")
        self.editor = NodeEditor(alert, on_saved=self._node_saved)
        self.more_panel = widgets.VBox([self.calling.port, self.editor])
        self.more_panel.add_class("dicomnb-qr-more-panel")
        show(self.more_panel, False)
        self.criteria = CriteriaForm(alert, on_change=self._criteria_applied)
        self.limit = widgets.IntText(value=DEFAULT_LIMIT, description="Limit",
                                     tooltip="Stop after this many studies (0: no limit); also the page size",
                                     layout=widgets.Layout(width="10em"))
        self.limit.add_class("dicomnb-qr-limit")
        self.page = widgets.BoundedIntText(value=1, min=1, max=1_000_000, description="Page",
                                           tooltip="Which page of 'limit' studies the archive is asked for",
                                           layout=widgets.Layout(width="10em"))
        self.page.add_class("dicomnb-qr-page")
        self.search_button = button("Search", "dicomnb-qr-search", "Search the archive (stops a search under way)",
                                    button_style="primary")
        self.clear_button = button("Clear", "dicomnb-qr-clear", "Empty the criteria and the results")
        self.import_button = button("Import", "dicomnb-qr-import", "Retrieve the selected studies or series")
        self.table = ResultsTable(on_expand=self._expand)

        self.node.observe(self._node_changed, names="value")
        self.more.observe(self._more_toggled, names="value")
        self.search_button.on_click(lambda _: self.search())
        self.clear_button.on_click(lambda _: self.clear())
        self.import_button.on_click(lambda _: self.import_selected())

        archive = widgets.HBox([self.node, self.method, self.calling.aet, self.more],
                               layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        archive.add_class("dicomnb-qr-archive")
        actions = widgets.HBox([self.limit, self.page, self.search_button, self.clear_button, self.import_button],
                               layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        actions.add_class("dicomnb-qr-actions")
        super().__init__([archive, self.more_panel, self.criteria, actions, self.table], alert=alert,
                         imported=imported, css="dicomnb-qr")
        # the tab's busy line is a search's (imports show in the download panel)
        self.stop_button.tooltip = "Stop the search: the studies found so far are shown"
        self.refresh_nodes()

    # -- the archive -----------------------------------------------------------------------------------
    def refresh_nodes(self, select: str | None = None) -> None:
        """Read the saved nodes again into the archive dropdown; choose ``select`` if given."""
        try:
            options = archive_options()
        except DicomnbError as exc:
            self.alert.error(exc)
            options = []
        before = self.node.value
        values = [value for _, value in options]
        wanted = select if select in values else before if before in values else (values[0] if values else None)
        self._quiet = True
        try:
            self.node.options = options
            self.node.value = wanted
        finally:
            self._quiet = False
        if wanted != before:
            self._archive_changed()
        else:
            self._refresh_method()

    def _node_changed(self, change: dict[str, Any]) -> None:
        if not self._quiet:
            self._archive_changed()

    def _archive_changed(self) -> None:
        """Another archive: its methods; the results of the other one go."""
        self._refresh_method()
        self.worker.cancel()
        self._stop_expansions()
        self.results = None
        self.table.clear()
        if self.more.value:
            self._load_editor()

    def _refresh_method(self) -> None:
        node = saved_node(self.node.value) if self.node.value else None
        options = method_options(node)
        current = self.method.value
        values = [value for _, value in options]
        self.method.options = options
        self.method.value = current if current in values else values[0]
        web = len(values) == 1 and values[0] == "wado-rs"
        self.method.disabled = web
        show(self.method, not web)

    def _more_toggled(self, change: dict[str, Any]) -> None:
        show(self.more_panel, bool(change["new"]))
        if change["new"]:
            self._load_editor()

    def _load_editor(self) -> None:
        name = self.node.value or ""
        self.editor.load(saved_node(name), name=name)

    def _node_saved(self, name: str | None) -> None:
        self.refresh_nodes(select=name)

    # -- searching ---------------------------------------------------------------------------------------
    def _criteria_applied(self) -> None:
        self.page.value = 1

    def search(self) -> Task[QueryResult] | None:
        """Search the archive with the criteria shown, off the main thread (a search under way stops).

        Returns the worker's task (None when the criteria cannot be sent: the alert says why).
        """
        try:
            criteria = self.criteria.criteria()
        except DicomnbError as exc:
            self.alert.error(exc)
            return None
        choice = self.node.value
        if not choice:
            self.alert.show("Choose an archive first (add one under More options).", "warning")
            return None
        limit, page = self.limit.value, self.page.value
        label = dict((value, text) for text, value in self.node.options).get(choice, choice)
        self.alert.clear()
        self._stop_expansions()
        self.results = None
        self.table.clear(f"Searching {label}…")
        self.working(f"Searching {label}…")

        def work(cancel: threading.Event) -> QueryResult:
            try:
                name = resolve_archive(choice)
                return dicomnb.query(name, criteria, level="study", limit=limit, page=page, cancel=cancel)
            except DicomnbError:
                if not cancel.is_set():
                    self.table.set_message("The search failed: see the alert.", "error")
                raise

        return self.worker.run("Search", work, self._searched)

    def _searched(self, result: QueryResult) -> None:
        self.results = result
        self.table.show_result(result)
        if result.node == demo_name():
            self._refresh_method()  # the demo archive is a saved node now

    def clear(self) -> None:
        """Stop a search under way, apply the preset "Empty" and empty the results."""
        self.worker.cancel()
        self._stop_expansions()
        self.alert.clear()  # first: the presets' file may have something to say
        self.criteria.clear()
        self.results = None
        self.table.clear()
        self.page.value = 1

    # -- series ------------------------------------------------------------------------------------------
    def _expand(self, study_uid: str) -> None:
        """List the series of ``study_uid`` (the table asks when it is first expanded)."""
        result = self.results
        if result is None:
            return
        node = result.node
        with self._lock:
            worker = self._expansions.setdefault(study_uid, Worker(self.alert))

        def work(cancel: threading.Event) -> QueryResult:
            try:
                return dicomnb.query(node, level="series", study_uid=study_uid, cancel=cancel)
            except DicomnbError as exc:
                if not cancel.is_set():
                    self.table.set_series(study_uid, None, f"The series could not be listed: {exc}")
                raise

        worker.run("Listing the series", work, lambda series: self.table.set_series(study_uid, series.rows))

    def _stop_expansions(self) -> None:
        with self._lock:
            workers, self._expansions = list(self._expansions.values()), {}
        for worker in workers:
            worker.cancel()

    # -- importing ---------------------------------------------------------------------------------------
    def import_selected(self) -> threading.Thread | None:
        """Retrieve what is selected in the background (None, and a warning, when nothing is).

        A ticked study is retrieved whole, the ticked series of an expanded study only
        them, with the method chosen. :meth:`wait` waits for the downloads to end.
        """
        result = self.results
        chosen = self.table.selection()
        if result is None or not chosen:
            self.alert.show("Select the studies (or series) to import first.", "warning")
            return None
        node, method = result.node, self.method.value
        self.alert.show(f"Importing {plural(len(chosen), 'study', 'studies')} from {node} with "
                        f"{METHOD_LABELS.get(method, method)}: the download panel shows the progress.", "info")
        thread = threading.Thread(target=self._import, args=(node, method, chosen), name="dicomnb-import",
                                  daemon=True)
        with self._lock:
            self._import_threads = [t for t in self._import_threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def _import(self, node: str, method: str, chosen: Sequence[tuple[str, tuple[str, ...] | None]]) -> None:
        def retrieve(study: tuple[str, tuple[str, ...] | None]) -> _Outcome:
            study_uid, series_uids = study
            try:
                return dicomnb.retrieve(node, study_uid, series_uids, method=method)
            except DicomnbError as exc:
                return exc
            except Exception as exc:  # noqa: BLE001 - a bug must not vanish in a thread
                LOGGER.exception("retrieving %s from %s failed", study_uid, node)
                return exc

        # IMPORT_PARALLEL studies at a time: a whole result selected is not one thread per study
        with ThreadPoolExecutor(min(IMPORT_PARALLEL, len(chosen)), thread_name_prefix="dicomnb-import-study") as pool:
            outcomes = list(pool.map(retrieve, chosen))
        self.imports = outcomes
        self._report(node, method, chosen, outcomes)

    def _report(self, node: str, method: str, chosen: Sequence[tuple[str, tuple[str, ...] | None]],
                outcomes: Sequence[_Outcome]) -> None:
        """Tell the dialog what arrived; show what failed, with the retry when jobs are incomplete."""
        report = ImportReport(sources=[f"{node} ({METHOD_LABELS.get(method, method)})"])
        failed: list[tuple[str, BaseException]] = []
        for (study_uid, _), outcome in zip(chosen, outcomes, strict=True):
            result = outcome if isinstance(outcome, RetrieveResult) else getattr(outcome, "result", None)
            if isinstance(result, RetrieveResult):
                report.merge(ImportReport(instances=list(result.instances), added=result.retrieved,
                                          seconds=result.seconds))
            if isinstance(outcome, BaseException):
                failed.append((study_uid, outcome))
        if report.instances:
            self.imported(report)
        if not failed:
            paused = sum(1 for outcome in outcomes if isinstance(outcome, RetrieveResult) and outcome.cancelled)
            if paused:
                self.alert.show(f"The download of {plural(paused, 'study', 'studies')} was paused: "
                                "resume it in the download panel.", "info")
            elif not report.instances:
                self.alert.show(f"{node} listed no instance to import.", "warning")
            return
        jobs = self._unfinished_jobs(node, failed)
        first = failed[0][1]
        message = str(first) if len(failed) == 1 else (
            f"{len(failed)} of {plural(len(chosen), 'study', 'studies')} were not imported completely: {first}")
        details = [f"{uid}: {exc}" for uid, exc in failed] if len(failed) > 1 else []
        action = (RETRY_LABEL, lambda: self.retry(jobs)) if jobs else None
        self.alert.show(message, "error", details, action)

    def _unfinished_jobs(self, node: str, failed: Sequence[tuple[str, BaseException]]) -> list[str]:
        """The incomplete download jobs of the studies that failed (what a retry fetches)."""
        ids = [job_id for _, exc in failed if isinstance(exc, RetrieveIncomplete)
               for job_id in getattr(exc.result, "jobs", None) or ()]
        studies = {uid for uid, _ in failed}
        try:
            ids += [job.id for job in self.downloads.jobs()
                    if job.node == node and job.study_uid in studies and job.state in (INCOMPLETE, INTERRUPTED)]
        except DicomnbError as exc:  # the job states cannot be read: no retry to offer
            LOGGER.warning("cannot list the download jobs: %s", exc)
        return list(dict.fromkeys(ids))

    def retry(self, jobs: Sequence[str]) -> list[Any]:
        """Download the missing files of ``jobs`` again (the alert's action); returns the jobs started."""
        try:
            started = self.downloads.retry_missing(jobs)
        except DicomnbError as exc:
            self.alert.error(exc)
            return []
        if not started:  # fetched since (the download panel's retry), or running already
            self.alert.show("No download was started again: nothing is missing any more, or the downloads "
                            "are under way; the download panel shows them.", "info")
            return []
        self.alert.show(f"Downloading the missing files of {plural(len(started), 'series', 'series')} again: "
                        "the download panel shows the progress.", "info")
        return started

    # -- waiting and closing -----------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:
        """Wait for everything under way in the tab (search, series, node test, imports); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        with self._lock:
            workers = [self.worker, self.editor.worker, *self._expansions.values()]
            threads = list(self._import_threads)
        done = all([worker.wait(left()) for worker in workers])
        for thread in threads:
            thread.join(left())
        return done and not any(thread.is_alive() for thread in threads)

    def close(self) -> None:
        """Stop the search, the series listings and a node test under way; close the tab's widgets.

        Imports go on: their downloads belong to the download manager.
        """
        if hasattr(self, "_expansions"):  # absent when the tab failed half-made
            self._stop_expansions()
        editor = getattr(self, "editor", None)
        if editor is not None:
            editor.worker.cancel()
        super().close()
