"""The import dialog in a real browser: JupyterLab started here, Debian's Chromium driven by Playwright.

A person's steps, each screenshotted (``test-output/screenshots/test_browser_dialog/<test>/``):

- **Local**: type the sample folder's path, Import; the alert says what came, the explorer
  lists the series with their thumbnails, and the "Series" view shows the catalog's table.
- **Drop**: drop a folder of DICOM files on the drop zone (a real folder drop: Chromium's
  DevTools ``Input.dispatchDragEvent``); the files reach the kernel, the catalog grows.
- **ZIP**: an AES-encrypted archive asks for its password in place, says when the password
  does not open it, and imports with the right one.
- **Query/Retrieve**: an Orthanc of this module's, saved as a node in the test kernel's
  configuration: search with a limit of 2, turn to the next page, select a study, Import,
  and the download panel's overall bar reaches 100% while the catalog gets the study.

One JupyterLab and one Chromium serve the module; each test has a kernel of its own (its
own cache and configuration: fixture ``lab_kernel``) running a notebook whose first cell is
``import dicomnb; d = dicomnb.dialog()``. Widgets are found by their ``dicomnb-...`` CSS
classes. The browser's own timings (opening the dialog, a search until its rows show) are
written to ``test-output/timings/test_browser_dialog.json`` for the benchmark
(``benchmarks/bench_dialog.py``); nothing here asserts on time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from browser import (  # noqa: F401 - the fixtures chromium, jupyter_lab, browser_page, lab_kernel
    REPOSITORY,
    SHOWN,
    BrowserPage,
    LabNotebook,
    LabServer,
    browser_page_fixture,
    chromium_fixture,
    click_timed,
    drop_folder,
    jupyter_lab_fixture,
    lab_command,
    lab_kernel_fixture,
    open_notebook,
    write_notebook,
)
from conftest import TEST_FILES, require_module, require_tool

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.integration

#: The notebook of every test: the dialog, then a cell that prints what the kernel's catalog holds.
DIALOG_CELL = "import dicomnb; d = dicomnb.dialog()"
CATALOG_CELL = """import json
_found = dicomnb.catalog.instances
print(json.dumps({"instances": len(_found),
                  "studies": sorted(set(_found["StudyInstanceUID"])) if len(_found) else [],
                  "sops": sorted(_found["SOPInstanceUID"]) if len(_found) else []}))"""

#: Shown once the dialog's tab bar has its last tab.
TABS_SHOWN = ".dicomnb-tabs .lm-TabBar-tab:last-child .lm-TabBar-tabLabel"
#: The result rows of the Query/Retrieve tab (a fixed pool; the unused ones are hidden).
RESULT_ROWS = ".dicomnb-results-row"
TIMINGS = Path(os.environ.get("DICOMNB_TEST_OUTPUT") or REPOSITORY / "test-output") / "timings" / "test_browser_dialog.json"

#: The studies of the module's Orthanc: patient name → patient ID (each SERIES CT series of
#: PER_SERIES instances).
PATIENTS = {"Browser^Alpha": "BR001", "Browser^Bravo": "BR002", "Browser^Charlie": "BR003",
            "Browser^Delta": "BR004", "Browser^Echo": "BR005"}
SERIES, PER_SERIES = 2, 5
PASSWORD = "open sesame"


def record_timing(name: str, seconds: float, run: str | None = None, **details: Any) -> None:
    """Add a browser timing to :data:`TIMINGS` (kept with those of the other tests).

    With ``run`` (a test's name), the timing is one of several: the entry keeps each run's
    seconds and gives their median.
    """
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    try:
        timings = json.loads(TIMINGS.read_text())
    except (OSError, ValueError):
        timings = {}
    entry: dict[str, Any] = {**details}
    if run is not None:
        runs = {**timings.get(name, {}).get("runs", {}), run: round(seconds, 4)}
        entry["runs"], seconds = runs, statistics.median(runs.values())
    timings[name] = {"seconds": round(seconds, 4), **entry}
    TIMINGS.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")


# --- the page --------------------------------------------------------------------------------------

@dataclass
class Dialog:
    """The dialog shown by a notebook's first cell, and the page around it."""

    shown: BrowserPage
    notebook: LabNotebook
    opened_s: float

    @property
    def page(self) -> Page:
        return self.shown.page

    def find(self, selector: str) -> Locator:
        """The first match of ``selector`` in the dialog's output."""
        return self.notebook.output(0).locator(selector).first

    def visible(self, selector: str) -> Locator:
        """The matches of ``selector`` in the dialog that are shown (a hidden pool row is not)."""
        return self.notebook.output(0).locator(f"{selector}:visible")

    def tab(self, title: str) -> None:
        """Show the tab titled ``title`` (a click on its title in the tab bar)."""
        self.find(".dicomnb-tabs").locator(".lm-TabBar-tabLabel", has_text=re.compile(f"^{re.escape(title)}$")).click()
        self.find(".dicomnb-tabs .lm-TabBar-tab.lm-mod-current").filter(has_text=title).wait_for()

    def alert(self) -> Locator:
        """The alert's message."""
        return self.find(".dicomnb-alert-message")

    def catalog(self) -> dict[str, Any]:
        """What the kernel's catalog holds (the notebook's second cell, run now)."""
        self.notebook.run_cell(1)
        text = self.notebook.output(1).inner_text().strip()
        return json.loads(text.splitlines()[-1])

    def shot(self, name: str, selector: str | None = None) -> Path:
        """A screenshot, ``selector``'s first match in the dialog scrolled into view first."""
        if selector is not None:
            self.find(selector).scroll_into_view_if_needed()
        return self.shown.shot(name)


@pytest.fixture
def dialog(browser_page: BrowserPage, jupyter_lab: LabServer, lab_kernel: str,
           request: pytest.FixtureRequest) -> Iterator[Dialog]:
    """The test's notebook open in JupyterLab, its dialog cell run (timed until the tabs show).

    Its kernel is shut down at the end (the server would do it when it stops; done here, the
    module's kernels do not pile up on a small machine).
    """
    from dicomnb.widgets.dialog import TAB_TITLES

    name = f"{request.node.name}.ipynb"
    write_notebook(jupyter_lab.root / name, [DIALOG_CELL, CATALOG_CELL], kernel=lab_kernel)
    try:
        notebook = open_notebook(browser_page, jupyter_lab, name)
        lab_command(browser_page.page, "application:toggle-left-area")  # the file browser away: room for the dialog
        opened = notebook.run_cell_until(0, SHOWN, TABS_SHOWN)
        record_timing("dialog_cell_to_tabs_first_run", opened, run=request.node.name,
                      what="the dialog cell run in a fresh kernel (importing dicomnb) until its tabs show")
        shown = Dialog(browser_page, notebook, opened)
        labels = shown.find(".dicomnb-tabs").locator(".lm-TabBar-tabLabel").all_inner_texts()
        assert tuple(labels) == TAB_TITLES
        assert not notebook.stderr(), notebook.stderr()
        yield shown
        assert not browser_page.external_requests, browser_page.external_requests
    finally:
        for session in jupyter_lab.api("sessions"):
            if session.get("path") == name:
                jupyter_lab.api(f"sessions/{session['id']}", method="DELETE")


def wait_for_thumbnails(dialog: Dialog, count: int) -> None:
    """Wait until ``count`` explorer rows of CT or MR series show their thumbnail (made off the
    kernel's main thread once the rows show), each image loaded and decoded by the page."""
    dialog.page.wait_for_function("""count => [...document.querySelectorAll('.dicomnb-explorer-series')]
        .filter(row => /^(CT|MR) /.test(row.innerText.trim()))
        .map(row => row.querySelector('img.dicomnb-thumbnail'))
        .filter(img => img && img.getAttribute('src') && img.complete && img.naturalWidth > 0)
        .length === count""", arg=count, timeout=30_000)


# --- Local -----------------------------------------------------------------------------------------

def test_local_folder_import_shows_the_series_and_their_table(dialog: Dialog, sample_tree: Path) -> None:
    from playwright.sync_api import expect

    dialog.shot("dialog-opened")
    dialog.find(".dicomnb-local-path textarea").fill(str(sample_tree))
    dialog.find("button.dicomnb-local-import").click()
    expect(dialog.alert()).to_contain_text("Imported 4 instances in 4 series", timeout=30_000)
    series = dialog.visible(".dicomnb-explorer-series")
    expect(series).to_have_count(4)
    wait_for_thumbnails(dialog, 2)  # the CT's and the MR's (the two RT plans have no pixels)
    texts = " ".join(series.all_inner_texts())
    assert all(modality in texts for modality in ("CT 1", "MR 1", "RTPLAN 1", "RTPLAN 2")), texts
    dialog.shot("imported-explorer", ".dicomnb-explorer")

    dialog.find(".dicomnb-explorer-view").get_by_role("button", name="Series", exact=True).click()
    frame = dialog.find(".dicomnb-explorer-frame")
    expect(frame.locator("table tbody tr")).to_have_count(4)
    expect(frame).to_contain_text("4 rows; page 1 of 1")
    headings = frame.locator("table thead th").all_inner_texts()
    assert "SeriesInstanceUID" in headings and "Modality" in headings
    dialog.shot("series-table", ".dicomnb-explorer-frame")
    assert dialog.catalog()["instances"] == 4
    assert not dialog.notebook.stderr()


# --- Drop ------------------------------------------------------------------------------------------

def test_a_dropped_folder_is_imported(dialog: Dialog, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    folder = tmp_path / "Dropped study"
    (folder / "more").mkdir(parents=True)
    shutil.copy(TEST_FILES / "CT_small.dcm", folder / "CT_small.dcm")
    shutil.copy(TEST_FILES / "MR_small.dcm", folder / "MR")  # no extension
    shutil.copy(TEST_FILES / "rtplan.dcm", folder / "more" / "plan.dcm")
    shutil.copy(TEST_FILES / "rtdose.dcm", folder / "more" / "dose.IMA")
    assert dialog.catalog()["instances"] == 0

    dialog.tab("Drop")
    zone = dialog.find(".dicomnb-drop-zone")
    expect(zone).to_contain_text("Drop DICOM files or a folder here")
    dialog.shot("drop-tab", ".dicomnb-drop-zone")
    drop_folder(dialog.page, zone, folder)
    expect(dialog.alert()).to_contain_text("Imported 4 instances in 4 series", timeout=30_000)
    expect(dialog.visible(".dicomnb-explorer-series")).to_have_count(4)
    wait_for_thumbnails(dialog, 2)
    dialog.shot("dropped-and-imported", ".dicomnb-alert")
    assert dialog.catalog()["instances"] == 4
    assert not dialog.notebook.stderr()


# --- ZIP -------------------------------------------------------------------------------------------

@pytest.fixture
def encrypted_zip(sample_tree: Path, tmp_path: Path) -> Path:
    """An AES-encrypted archive of two DICOM files (as tests/test_dialog.py makes it)."""
    require_module("pyzipper")
    import pyzipper

    archive = tmp_path / "secret.zip"
    with pyzipper.AESZipFile(archive, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(PASSWORD.encode())
        for name in ["CT_small.dcm", "sub/MRSMALL"]:
            zf.write(sample_tree / name, name)
    return archive


def test_an_encrypted_zip_asks_for_its_password(dialog: Dialog, encrypted_zip: Path) -> None:
    from playwright.sync_api import expect

    dialog.tab("ZIP")
    prompt = dialog.find(".dicomnb-zip-prompt")
    expect(prompt).to_be_hidden()
    dialog.find(".dicomnb-zip-path input").fill(str(encrypted_zip))
    dialog.find("button.dicomnb-zip-import").click()
    reason = dialog.find(".dicomnb-zip-password-reason")
    expect(prompt).to_be_visible(timeout=30_000)
    expect(reason).to_contain_text("secret.zip is encrypted")
    dialog.shot("password-asked", ".dicomnb-zip-prompt")

    password = dialog.find(".dicomnb-zip-password input")
    assert password.get_attribute("type") == "password"
    password.fill("not the password")
    dialog.find("button.dicomnb-zip-unlock").click()
    expect(reason).to_contain_text("does not open secret.zip", timeout=30_000)
    expect(password).to_have_value("")
    dialog.shot("wrong-password", ".dicomnb-zip-prompt")
    assert dialog.catalog()["instances"] == 0

    password.fill(PASSWORD)
    dialog.find("button.dicomnb-zip-unlock").click()
    expect(dialog.alert()).to_contain_text("Imported 2 instances", timeout=30_000)
    expect(prompt).to_be_hidden()
    wait_for_thumbnails(dialog, 2)  # read from the archive
    dialog.shot("unlocked-and-imported", ".dicomnb-alert")
    assert dialog.catalog()["instances"] == 2
    assert not dialog.notebook.stderr()


# --- Query/Retrieve --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Archive:
    """The module's Orthanc and its studies: patient name → (StudyInstanceUID, SOPInstanceUIDs)."""

    peer: Any
    studies: dict[str, tuple[str, frozenset[str]]]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    """An Orthanc of the module's own (on loopback), holding :data:`PATIENTS`' studies."""
    require_tool("Orthanc")
    require_module("pynetdicom")
    import peers
    from pydicom.uid import generate_uid

    folder = tmp_path_factory.mktemp("browser-studies")
    files: list[Path] = []
    studies: dict[str, tuple[str, frozenset[str]]] = {}
    for number, (name, patient_id) in enumerate(PATIENTS.items()):
        study, instances = generate_uid(), set()
        for ds in peers.ct_copies(study, SERIES, PER_SERIES):
            ds.PatientName, ds.PatientID = name, patient_id
            ds.StudyDate = ds.SeriesDate = f"2024010{number + 1}"
            ds.StudyDescription, ds.SeriesDescription = f"Chest CT of {name}", f"CT series {ds.SeriesNumber}"
            instances.add(ds.SOPInstanceUID)
            files.append(folder / f"{ds.SOPInstanceUID}.dcm")
            ds.save_as(files[-1], enforce_file_format=True)
        studies[name] = (study, frozenset(instances))
    with peers.run_orthanc(tmp_path_factory.mktemp("browser-orthanc"), load=False) as peer:
        assert peers.orthanc_upload(peer.http_port, files) == {}
        yield Archive(peer, studies)


@pytest.fixture
def saved_node(archive: Archive, isolated_config: Path) -> str:
    """The Orthanc saved as a DIMSE node in the test's configuration, which its kernel reads
    (ask for it before ``dialog``: the dialog lists the nodes saved when it opens)."""
    import dicomnb

    peer = archive.peer
    dicomnb.add_node("orthanc-browser", aet=peer.aet, host=peer.host, port=peer.port, wado_url=peer.wado_url)
    return "orthanc-browser"


def shown_patients(dialog: Dialog) -> list[str]:
    """The patient names of the result rows shown (each cell's full text is its title)."""
    return [row.locator(".dicomnb-results-cells span").first.get_attribute("title") or ""
            for row in dialog.visible(RESULT_ROWS).all()]


#: True once a display page of the results table ``arg.table`` shows in full: the footer's
#: "Studies a–b of N" (set after the rows) is shown, b - a + 1 rows are shown, and, when given,
#: ``arg.start`` is a and ``arg.first`` the first row's patient name. The rows are a pool of
#: elements reused from one page (and one result) to the next, hence these checks.
PAGE_SHOWN = """({table, start, first}) => {
  const footer = table.querySelector('.dicomnb-results-footer');
  const range = (table.querySelector('.dicomnb-results-pages')?.textContent ?? '').match(/Studies (\\d+)–(\\d+) of/);
  if (!footer || footer.getClientRects().length === 0 || !range) return false;
  const rows = [...table.querySelectorAll('.dicomnb-results-row')].filter(row => row.getClientRects().length > 0);
  const name = rows[0]?.querySelector('.dicomnb-results-cells span')?.getAttribute('title');
  return rows.length === range[2] - range[1] + 1 && (start == null || Number(range[1]) === start)
    && (first == null || name === first);
}"""

#: Run in the page before Search is clicked, on the results table: notes when the table has
#: been emptied for the search (its message says "Searching…" and no row is shown), so that
#: what shows afterwards is the new result, not the rows of the previous one.
WATCH_SEARCH = """table => {
  const message = table.querySelector('.dicomnb-results-message');
  window.__dicomnbSearching = false;
  window.__dicomnbWatch?.disconnect();
  window.__dicomnbWatch = new MutationObserver(() => {
    if (message.textContent.includes('Searching') && ![...table.querySelectorAll('.dicomnb-results-row')]
          .some(row => row.getClientRects().length > 0)) window.__dicomnbSearching = true; });
  window.__dicomnbWatch.observe(table, {subtree: true, childList: true, characterData: true, attributes: true});
}"""

#: True once a search's result shows in full (:data:`PAGE_SHOWN`) after the table was emptied
#: for it, with the query's message ("... from <node> in 0.05 s"). ``arg`` is the table.
RESULT_SHOWN = """table => {
  const message = table.querySelector('.dicomnb-results-message').textContent;
  return window.__dicomnbSearching && !message.includes('Searching') && message.includes(' from ')
    && (PAGE_SHOWN)({table, start: 1, first: null});
}""".replace("PAGE_SHOWN", PAGE_SHOWN)


def search_until_rows(table: Any, search_button: Any, timeout: float = 30) -> float:
    """Click Search; return the seconds (page clock) until its first page of rows shows in full.

    ``table`` is the results table's locator (``.dicomnb-results``), ``search_button`` the
    Search button's (``button.dicomnb-qr-search``).
    """
    table.evaluate(WATCH_SEARCH)
    return click_timed(search_button, RESULT_SHOWN, table.element_handle(), timeout=timeout)


def search(dialog: Dialog) -> float:
    """Click Search in the dialog; wait until the rows of its result show; return the seconds."""
    from playwright.sync_api import expect

    seconds = search_until_rows(dialog.find(".dicomnb-results"), dialog.find("button.dicomnb-qr-search"))
    expect(dialog.find(".dicomnb-results-message")).to_contain_text("from orthanc-browser")
    return seconds


def test_search_page_select_and_import_with_progress(archive: Archive, saved_node: str, dialog: Dialog) -> None:
    from playwright.sync_api import expect

    dialog.tab("Query/Retrieve")
    archives = dialog.find(".dicomnb-qr-node select")
    choices = archives.locator("option").evaluate_all("options => options.map(o => o.value)")
    ours = next(value for value in choices if value.startswith(saved_node + " "))
    assert choices[-1] == "the embedded demo archive"
    archives.select_option(value=ours)
    expect(dialog.find(".dicomnb-qr-method select")).to_have_value("C-GET")
    limit = dialog.find(".dicomnb-qr-limit input")
    limit.fill("2")
    limit.press("Enter")
    dialog.shot("query-tab", ".dicomnb-qr-actions")

    first_search = search(dialog)
    record_timing("search_click_to_rows", first_search, node="Orthanc 1.10 (DIMSE C-FIND)", studies_in_archive=len(PATIENTS),
                  limit=2, what="Search clicked until the result rows show (a fresh kernel's first search)")
    expect(dialog.visible(RESULT_ROWS)).to_have_count(2)
    expect(dialog.find(".dicomnb-results-message")).to_contain_text("stopped after 2 studies")
    first_page = shown_patients(dialog)
    dialog.shot("first-page", ".dicomnb-results")

    page = dialog.find(".dicomnb-qr-page input")
    page.fill("2")
    page.press("Enter")
    second_search = search(dialog)
    record_timing("search_click_to_rows_second", second_search, limit=2, page=2,
                  what="the same kernel's next search (page 2) until its rows show")
    expect(dialog.visible(RESULT_ROWS)).to_have_count(2)
    second_page = shown_patients(dialog)
    assert set(first_page).isdisjoint(second_page) and set(first_page + second_page) <= set(PATIENTS), (
        first_page, second_page)

    chosen = second_page[0]
    dialog.visible(RESULT_ROWS).first.locator(".dicomnb-results-select input[type=checkbox]").check()
    expect(dialog.find(".dicomnb-results-selection")).to_have_text("1 study selected")
    dialog.shot("second-page-selected", ".dicomnb-results")

    # the overall bar's widths as the page draws them, from the click on Import to the end
    bar = dialog.find(".dicomnb-downloads-bar .progress-bar")
    bar.evaluate("""bar => { window.__dicomnbWidths = [bar.style.width];
        new MutationObserver(() => window.__dicomnbWidths.push(bar.style.width))
          .observe(bar, {attributes: true, attributeFilter: ['style']}); }""")
    total = SERIES * PER_SERIES
    imported = click_timed(dialog.find("button.dicomnb-qr-import"),
                           "bar => bar.style.width === '100%'", bar.element_handle(), timeout=60)
    expect(bar).to_have_attribute("style", re.compile(r"width: 100%"))
    expect(dialog.find(".dicomnb-downloads-summary")).to_contain_text(f"{total} of {total} instances")
    expect(dialog.alert()).to_contain_text(f"Imported {total} instances in {SERIES} series of 1 study",
                                           timeout=60_000)
    widths = dialog.page.evaluate("window.__dicomnbWidths")
    assert widths[0] == "0%" and widths[-1] == "100%", widths
    dialog.shot("imported-100-percent", ".dicomnb-downloads")
    expect(dialog.visible(".dicomnb-download-row")).to_have_count(SERIES)

    study, instances = archive.studies[chosen]
    held = dialog.catalog()
    assert held["instances"] == total and held["studies"] == [study] and set(held["sops"]) == instances, held
    expect(dialog.visible(".dicomnb-explorer-series")).to_have_count(SERIES)
    wait_for_thumbnails(dialog, SERIES)
    dialog.shot("catalog-after-import", ".dicomnb-explorer")
    record_timing("import_click_to_100_percent", imported, instances=total, method="C-GET", bar_widths=widths,
                  what="Import clicked until the download panel's overall bar is full")
    assert not dialog.notebook.stderr()
