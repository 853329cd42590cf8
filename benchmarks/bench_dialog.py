"""Dialog benchmark: the import dialog in a real browser, timed on the page's own clock.

Starts its own JupyterLab (on a free loopback port, with a random token and Jupyter and
dicomnb folders of its own) and Debian's Chromium under Playwright, with the test suite's
harness (``tests/browser.py``), and opens a notebook whose kernel starts the embedded demo
archive (``dicomnb.demo()``: pynetdicom's Q/R SCP with pydicom's samples, 22 studies). Then
it times, each from the key press or click until the page shows the result (checked at every
animation frame; :func:`browser.press_timed`, :func:`browser.click_timed`):

- **open**: running the cell ``d = dicomnb.dialog()`` (dicomnb already imported) until the
  dialog's tabs show;
- **search**: on the Query/Retrieve tab with the demo archive chosen, clicking Search until
  the rows of its result show (Clear before each run, so that the rows come from the new
  search);
- **10,000 studies**, a synthetic study-level result built in the kernel (as
  ``tests/test_dialog_query.py`` builds one), shown by the results widget
  (:class:`dicomnb.widgets.results.ResultsTable`): running the cell that makes the widget
  and shows the result until its first page shows ("render"); in a table already shown,
  clicking a button that calls ``table.show_result(result)`` until its rows show ("show");
  clicking Next until the next page's rows show ("next page"); and the number of DOM nodes
  of the table once shown;
- **the peer**: the same 10,000 rows as one ``DataFrame.to_html()`` table
  (``IPython.display.HTML``), its cell run until the table shows, and its DOM nodes.

One untimed run of each first, then ``--runs`` runs; the figures are medians. The targets:
opening the dialog and showing a page of search results each take less than 1 s, and a
10,000-study result stays responsive: its first page and the next page each show in less than
1 s, with one page of rows in the DOM (the peer's giant table is the comparison). Writes
``results_dialog.json`` and the "Dialog" section of ``results.md`` (the rest of that file is
left as it is); it quotes the browser test's own timings (``tests/test_browser_dialog.py``
writes them to ``test-output/timings/test_browser_dialog.json``) when they are there.
Screenshots of the steps go to ``test-output/screenshots/bench_dialog/``. JupyterLab (with
its kernel and the demo archive) and Chromium are stopped by PID at the end.

    .venv/bin/python benchmarks/bench_dialog.py [--runs 5] [--studies 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import HERE  # benchmarks/, beside this script
from results_file import publish

sys.path.insert(0, str(HERE.parent / "tests"))  # (common.py puts it there too)
import browser  # noqa: E402 - tests/browser.py: JupyterLab, Chromium, the page's clock
import test_browser_dialog as dialog_test  # noqa: E402 - the browser test's selectors and search timing

from dicomnb.widgets.results import PAGE_SIZE  # noqa: E402 - the results table's display page

SECTION = "# Dialog benchmark results"
TARGET_S = 1.0  # seconds: opening the dialog, a page of search results, a page of 10,000 studies

#: The notebook: the demo archive, the dialog, and the 10,000-study result with its peer.
SETUP = "import dicomnb\narchive = dicomnb.demo()\nprint(archive.node.name, archive.node.port)"
DIALOG = "d = dicomnb.dialog()"
CLOSE_DIALOG = "d.close()"
BIG_RESULT = """import ipywidgets as widgets
from IPython.display import HTML
from dicomnb.core.query import QueryResult
from dicomnb.widgets.results import ResultsTable

rows = [{{"StudyInstanceUID": f"1.2.826.0.1.3680043.10.{{n}}", "PatientName": f"Patient^{{n:05d}}",
         "PatientID": f"ID{{n:05d}}", "PatientBirthDate": "19700101", "StudyDate": "20240102",
         "ModalitiesInStudy": ["CT", "SEG"], "StudyDescription": f"Chest CT {{n}}", "AccessionNumber": f"A{{n:06d}}",
         "NumberOfStudyRelatedSeries": 3, "NumberOfStudyRelatedInstances": 300}} for n in range({studies})]
big = QueryResult(rows=rows, node="synthetic", limit=0)
big_frame = big.frame
print(len(rows), big_frame.shape)"""
RENDER = "fresh = ResultsTable()\nfresh.show_result(big)\nfresh"
SHOWN_TABLE = """table = ResultsTable()
show_big = widgets.Button(description="Show the result"); show_big.add_class("dicomnb-bench-show")
clear_big = widgets.Button(description="Clear"); clear_big.add_class("dicomnb-bench-clear")
show_big.on_click(lambda _: table.show_result(big))
clear_big.on_click(lambda _: table.clear())
widgets.VBox([widgets.HBox([show_big, clear_big]), table])"""
PEER = "HTML('<div class=\"dicomnb-bench-html\">' + big_frame.to_html(index=False) + '</div>')"
STOP_DEMO = "d.close(); dicomnb.demo.stop()"
CELLS = {"setup": 0, "dialog": 1, "close": 2, "big": 3, "render": 4, "table": 5, "peer": 6, "stop": 7}

#: True once the render cell's table (the results table in that cell's output not marked
#: stale) shows its first page in full, its first row the patient ``arg``.
RENDERED = """first => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[CELL];
  const table = [...(cell?.querySelectorAll('.dicomnb-results') ?? [])].find(t => !t.closest('[data-dicomnb-stale]'));
  return !!table && (PAGE_SHOWN)({table, start: 1, first});
}""".replace("CELL", str(CELLS["render"])).replace("PAGE_SHOWN", dialog_test.PAGE_SHOWN)
#: True once no study row of the table ``arg`` is shown.
NO_ROW_SHOWN = """table => ![...table.querySelectorAll('.dicomnb-results-row')].some(r => r.getClientRects().length > 0)"""
#: The DOM nodes below an element.
NODES = "element => element.getElementsByTagName('*').length"


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def timed(runs: int, once: Callable[[int], float]) -> list[float]:
    """One untimed run of ``once(0)``, then ``runs`` timed runs (``once(1)``...); their seconds."""
    once(0)
    return [once(run) for run in range(1, runs + 1)]


class Bench:
    """The notebook open in the page, and the measures."""

    def __init__(self, shown: browser.BrowserPage, notebook: browser.LabNotebook, studies: int) -> None:
        self.shown, self.notebook, self.studies = shown, notebook, studies
        self.page = shown.page

    def output(self, cell: str, selector: str) -> Any:
        return self.notebook.output(CELLS[cell]).locator(selector).first

    # (a) the dialog
    def open_dialog(self, run: int) -> float:
        if run or self.notebook.output(CELLS["dialog"]).locator(".dicomnb-tabs").count():
            self.notebook.run_cell(CELLS["close"])
        browser.mark_stale(self.page, ".dicomnb-tabs")
        seconds = self.notebook.run_cell_until(CELLS["dialog"], browser.SHOWN, dialog_test.TABS_SHOWN)
        print(f"  dialog shown in {seconds:.3f} s", flush=True)
        return seconds

    # (b) a search of the demo archive
    def search(self, run: int) -> float:
        table = self.output("dialog", ".dicomnb-results")
        self.output("dialog", "button.dicomnb-qr-clear").click()
        self.page.wait_for_function(NO_ROW_SHOWN, arg=table.element_handle(), timeout=30_000)
        seconds = dialog_test.search_until_rows(table, self.output("dialog", "button.dicomnb-qr-search"))
        message = self.output("dialog", ".dicomnb-results-message").inner_text()
        print(f"  search: rows shown in {seconds:.3f} s ({message})", flush=True)
        return seconds

    # (c) 10,000 studies
    def render(self, run: int) -> float:
        browser.mark_stale(self.page, ".dicomnb-results")
        seconds = self.notebook.run_cell_until(CELLS["render"], RENDERED, "Patient^00000")
        print(f"  {self.studies:,} studies: cell run until the first page shows in {seconds:.3f} s", flush=True)
        return seconds

    def show(self, run: int) -> float:
        table = self.output("table", ".dicomnb-results")
        self.output("table", "button.dicomnb-bench-clear").click()
        self.page.wait_for_function(NO_ROW_SHOWN, arg=table.element_handle(), timeout=30_000)
        seconds = browser.click_timed(self.output("table", "button.dicomnb-bench-show"), dialog_test.PAGE_SHOWN,
                                      {"table": table.element_handle(), "start": 1, "first": "Patient^00000"})
        print(f"  {self.studies:,} studies: shown in a table on the page in {seconds:.3f} s", flush=True)
        return seconds

    def next_page(self, run: int) -> float:
        table = self.output("table", ".dicomnb-results")
        start = (run + 1) * PAGE_SIZE  # the untimed run turns to page 2, run 1 to page 3...
        expected = f"Patient^{start:05d}"
        seconds = browser.click_timed(self.output("table", "button.dicomnb-results-next"), dialog_test.PAGE_SHOWN,
                                      {"table": table.element_handle(), "start": start + 1, "first": expected})
        print(f"  next page ({expected} first) in {seconds:.3f} s", flush=True)
        return seconds

    def peer(self, run: int) -> float:
        browser.mark_stale(self.page, ".dicomnb-bench-html")
        seconds = self.notebook.run_cell_until(CELLS["peer"], browser.SHOWN, ".dicomnb-bench-html table tbody tr")
        print(f"  DataFrame.to_html() of {self.studies:,} rows: shown in {seconds:.3f} s", flush=True)
        return seconds


def measure(bench: Bench, runs: int) -> dict[str, Any]:
    notebook, page, shot = bench.notebook, bench.page, bench.shown.shot
    results: dict[str, Any] = {}

    print("(a) opening the dialog", flush=True)
    results["open_s"] = timed(runs, bench.open_dialog)
    shot("dialog-opened")

    print("(b) searching the demo archive", flush=True)
    page.locator(".dicomnb-tabs .lm-TabBar-tabLabel", has_text="Query/Retrieve").first.click()
    archive = bench.output("dialog", ".dicomnb-qr-node select")
    archive.select_option(value="the embedded demo archive")
    results["search_s"] = timed(runs, bench.search)
    table = bench.output("dialog", ".dicomnb-results")
    results["search_rows_shown"] = table.locator(".dicomnb-results-row:visible").count()
    results["search_message"] = bench.output("dialog", ".dicomnb-results-message").inner_text()
    table.scroll_into_view_if_needed()
    shot("demo-searched")

    print(f"(c) {bench.studies:,} studies", flush=True)
    notebook.run_cell(CELLS["big"])
    results["render_s"] = timed(runs, bench.render)
    rendered = bench.output("render", ".dicomnb-results")
    results["render_nodes"] = rendered.evaluate(NODES)
    rendered.scroll_into_view_if_needed()
    shot("ten-thousand-rendered")

    notebook.run_cell(CELLS["table"])
    bench.output("table", "button.dicomnb-bench-show").wait_for()
    results["show_s"] = timed(runs, bench.show)
    shown_table = bench.output("table", ".dicomnb-results")
    results["rows_in_dom"] = shown_table.locator(".dicomnb-results-row").count()
    results["rows_shown"] = shown_table.locator(".dicomnb-results-row:visible").count()
    results["pages_text"] = bench.output("table", ".dicomnb-results-pages").inner_text()
    results["table_nodes"] = shown_table.evaluate(NODES)
    results["next_page_s"] = timed(runs, bench.next_page)
    results["pages_text_after"] = bench.output("table", ".dicomnb-results-pages").inner_text()
    results["table_nodes_after"] = shown_table.evaluate(NODES)
    shown_table.locator(".dicomnb-results-footer").scroll_into_view_if_needed()
    shot("ten-thousand-next-page")

    print(f"(peer) DataFrame.to_html() of {bench.studies:,} rows", flush=True)
    results["peer_s"] = timed(runs, bench.peer)
    peer_html = bench.output("peer", ".dicomnb-bench-html")
    results["peer_nodes"] = peer_html.evaluate(NODES)
    results["peer_rows"] = peer_html.locator("table tbody tr").count()
    peer_html.scroll_into_view_if_needed()
    shot("peer-to-html")

    notebook.run_cell(CELLS["stop"])
    errors = notebook.stderr()
    if errors:
        raise RuntimeError("the notebook printed errors:\n" + "\n".join(errors))
    results["console_errors"] = list(bench.shown.console_errors)
    results["external_requests"] = list(bench.shown.external_requests)
    return results


def test_timings() -> dict[str, Any] | None:
    """The browser test's last timings (``tests/test_browser_dialog.py``), if it ran here."""
    try:
        return dict(json.loads(dialog_test.TIMINGS.read_text()))
    except (OSError, ValueError):
        return None


def summarise(raw: dict[str, Any], runs: int, studies: int, versions: dict[str, str]) -> dict[str, Any]:
    import dicomnb

    figures = {key: median(raw[key]) for key in ("open_s", "search_s", "render_s", "show_s", "next_page_s", "peer_s")}
    paged = raw["rows_in_dom"] == raw["rows_shown"] == PAGE_SIZE < studies and raw["table_nodes"] < raw["peer_nodes"] / 20
    verdicts = {
        "open": figures["open_s"] < TARGET_S,
        "search": figures["search_s"] < TARGET_S,
        "ten_thousand": paged and max(figures["render_s"], figures["show_s"], figures["next_page_s"]) < TARGET_S,
    }
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, dicomnb {dicomnb.__version__}, "
                   f"JupyterLab {versions['jupyterlab']}, ipywidgets {versions['ipywidgets']}, "
                   f"Chromium {versions['chromium']} (headless), {platform.platform()}",
        "runs": runs, "studies": studies, "target_s": TARGET_S,
        "runs_s": {key: [round(v, 4) for v in raw[key]] for key in figures},
        "median_s": {key: round(value, 4) for key, value in figures.items()},
        **{key: raw[key] for key in ("search_rows_shown", "search_message", "rows_in_dom", "rows_shown", "pages_text",
                                     "pages_text_after", "table_nodes", "table_nodes_after", "render_nodes",
                                     "peer_nodes", "peer_rows", "console_errors", "external_requests")},
        "paged": paged,
        "verdicts": verdicts,
        "pass": all(verdicts.values()),
        "browser_test": test_timings(),
    }


def to_markdown(results: dict[str, Any]) -> str:
    m, runs = results["median_s"], results["runs_s"]

    def each(key: str) -> str:
        return ", ".join(f"{v:.3f}" for v in runs[key])

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    v = results["verdicts"]
    studies = f"{results['studies']:,}"
    lines = [
        SECTION, "",
        f"- Date: {results['date']}",
        f"- Machine: {results['machine']}",
        "- Timed in the browser on the page's own clock (`performance.now()`), from the key press (a cell "
        "run with Control+Enter) or the click until the page shows the result, checked at every animation "
        "frame; one untimed run of each first, then "
        f"{results['runs']} runs; medians. JupyterLab, the kernel (with the demo archive) and Chromium run "
        "on this machine over loopback.",
        f"- Demo archive: `dicomnb.demo()` (pynetdicom's qrscp with pydicom's samples); the search shows "
        f"{results['search_rows_shown']} rows (\"{results['search_message']}\").",
        f"- {studies} studies: a synthetic study-level result (nine columns filled), built in the kernel.", "",
        "| measure | median (s) | each run (s) | target | verdict |",
        "|---|---:|---|---|---|",
        f"| open: `d = dicomnb.dialog()` run until the tabs show | {m['open_s']:.3f} | {each('open_s')} | "
        f"< {TARGET_S:g} s | {verdict(v['open'])} |",
        f"| search: Search clicked (demo archive) until the result rows show | {m['search_s']:.3f} | "
        f"{each('search_s')} | < {TARGET_S:g} s | {verdict(v['search'])} |",
        f"| {studies} studies, render: the cell making the results widget and showing the result, until "
        f"its first page shows | {m['render_s']:.3f} | {each('render_s')} | < {TARGET_S:g} s | "
        f"{verdict(v['ten_thousand'])} |",
        f"| {studies} studies, show: `table.show_result(result)` clicked in a table already shown, until "
        f"its rows show | {m['show_s']:.3f} | {each('show_s')} | < {TARGET_S:g} s | {verdict(v['ten_thousand'])} |",
        f"| {studies} studies, next page: Next clicked until the next rows show | {m['next_page_s']:.3f} | "
        f"{each('next_page_s')} | < {TARGET_S:g} s | {verdict(v['ten_thousand'])} |",
        f"| peer: the same rows as one `DataFrame.to_html()` table, its cell run until the table shows | "
        f"{m['peer_s']:.3f} | {each('peer_s')} | (comparison) | |",
        "",
        f"The results widget with {studies} studies keeps {results['rows_in_dom']} study rows in the page "
        f"({results['rows_shown']} shown: \"{results['pages_text']}\"; after the next-page runs "
        f"\"{results['pages_text_after']}\"): {results['table_nodes']:,} DOM nodes "
        f"({results['table_nodes_after']:,} after turning pages; {results['render_nodes']:,} for the table "
        f"made by the render cell), against {results['peer_nodes']:,} for the `to_html()` table of "
        f"{results['peer_rows']:,} rows. Its first page shows "
        f"{results['median_s']['peer_s'] / max(results['median_s']['render_s'], 1e-9):.1f}× sooner than that "
        f"table (a new widget's cell), {results['median_s']['peer_s'] / max(results['median_s']['show_s'], 1e-9):.0f}× "
        "sooner in a table already shown. "
        f"Paged display: {verdict(results['paged'])} (the rows in the page are one display page, and the "
        "table has under 1/20 of the peer's nodes).",
    ]
    tested = results.get("browser_test")
    if tested:
        lines += ["", "The browser test's last run (`tests/test_browser_dialog.py`, a fresh kernel per test, "
                  "the module's Orthanc of 5 studies), for comparison:", "",
                  "| timing | seconds | what |", "|---|---:|---|"]
        for name, entry in sorted(tested.items()):
            lines.append(f"| {name} | {entry.get('seconds', 0):.3f} | {entry.get('what', '')} |")
    lines += ["", f"Overall: {verdict(results['pass'])}."]
    return "\n".join(lines) + "\n"


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each measure (default 5)")
    parser.add_argument("--studies", type=int, default=10_000, help="studies in the large result (default 10000)")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.md and results_dialog.json go")
    options = parser.parse_args(args)
    if options.runs < 1 or options.studies <= PAGE_SIZE * (options.runs + 2):
        parser.error("--runs must be at least 1, and --studies enough for a next page on every run")
    import ipywidgets
    import jupyterlab

    root = Path(tempfile.mkdtemp(prefix="dicomnb-bench-dialog-"))
    shots = browser.REPOSITORY / "test-output" / "screenshots" / "bench_dialog"
    cells = [SETUP, DIALOG, CLOSE_DIALOG, BIG_RESULT.format(studies=options.studies), RENDER, SHOWN_TABLE, PEER,
             STOP_DEMO]
    try:
        with browser.run_jupyterlab(root / "lab", state=root / "state") as lab, \
                browser.launch_chromium() as chromium, browser.new_page(chromium, shots) as shown:
            versions = {"jupyterlab": jupyterlab.__version__, "ipywidgets": ipywidgets.__version__,
                        "chromium": chromium.version}
            browser.write_notebook(lab.root / "bench.ipynb", cells)
            notebook = browser.open_notebook(shown, lab, "bench.ipynb")
            browser.lab_command(shown.page, "application:toggle-left-area")
            notebook.run_cell(CELLS["setup"], timeout=60)
            raw = measure(Bench(shown, notebook, options.studies), options.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = summarise(raw, options.runs, options.studies, versions)
    publish(options.out, "results_dialog.json", results, to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
