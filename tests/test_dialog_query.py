"""The Query/Retrieve tab's logic without a browser: controls set and buttons clicked in Python,
against an Orthanc of the module's own (DIMSE, WADO-URI, QIDO-RS, WADO-RS)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import require_module, require_tool
from netcommon import collect_garbage, pynetdicom_socket_leak  # noqa: F401 - collect_garbage: autouse fixture

import dicomnb
from dicomnb.core.nodes import DicomWebNode, NodeStore
from dicomnb.core.presets import EMPTY
from dicomnb.core.query import QueryResult
from dicomnb.widgets.common import Alert, shown
from dicomnb.widgets.criteria import CUSTOM
from dicomnb.widgets.downloads import RETRY_LABEL
from dicomnb.widgets.nodes import DEMO_LABEL
from dicomnb.widgets.query import DEFAULT_LIMIT, QueryTab
from dicomnb.widgets.results import PAGE_SIZE, ResultsTable, StudyRow

TODAY = date.today()

#: The studies of the module's Orthanc: patient name → (ID, modality, study date, series, instances per series).
STUDIES: dict[str, tuple[str, str, str, int, int]] = {
    "Alpha^One": ("QR001", "CT", TODAY.strftime("%Y%m%d"), 1, 1),
    "Alpha^Two": ("QR002", "MR", "20200315", 1, 1),
    "Beta^Three": ("QR003", "CT", "20210601", 2, 2),
    "Beta^Four": ("QR004", "MR", "20220101", 1, 1),
    "Gamma^Five": ("QR005", "CT", "20230505", 3, 3),
    "Gamma^Six": ("QR006", "US", "20190101", 1, 1),
    "Delta^Seven": ("QR007", "CT", "20180101", 1, 1),
}
EVERYONE = sorted(STUDIES)


@dataclass(frozen=True)
class Archive:
    """The module's Orthanc and what it holds."""

    peer: Any
    study: dict[str, str]                        # patient name → StudyInstanceUID
    series: dict[str, tuple[str, ...]]           # patient name → SeriesInstanceUIDs, by series number
    instances: dict[str, dict[str, list[str]]]   # patient name → series UID → SOPInstanceUIDs


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    """Its own Orthanc: the session's has its studies counted by other tests."""
    require_tool("Orthanc")
    require_module("pynetdicom")
    import peers
    from pydicom.uid import generate_uid

    folder = tmp_path_factory.mktemp("qr-studies")
    files: list[Path] = []
    study: dict[str, str] = {}
    series: dict[str, list[str]] = {}
    instances: dict[str, dict[str, list[str]]] = {}
    for name, (patient_id, modality, day, count, per_series) in STUDIES.items():
        study[name] = generate_uid()
        for ds in peers.ct_copies(study[name], count, per_series):
            ds.PatientName, ds.PatientID, ds.StudyDate, ds.SeriesDate = name, patient_id, day, day
            ds.Modality, ds.StudyDescription = modality, f"{modality} of {name}"
            ds.SeriesDescription = f"{modality} series {ds.SeriesNumber}"
            if ds.SeriesInstanceUID not in instances.setdefault(name, {}):
                series.setdefault(name, []).append(ds.SeriesInstanceUID)
            instances[name].setdefault(ds.SeriesInstanceUID, []).append(ds.SOPInstanceUID)
            files.append(folder / f"{ds.SOPInstanceUID}.dcm")
            ds.save_as(files[-1], enforce_file_format=True)
    with peers.run_orthanc(tmp_path_factory.mktemp("qr-orthanc"), load=False) as peer:
        assert peers.orthanc_upload(peer.http_port, files) == {}
        yield Archive(peer, study, {k: tuple(v) for k, v in series.items()}, instances)


@pytest.fixture
def dimse(archive: Archive) -> str:
    """The archive saved as a DIMSE node (with its WADO-URI URL)."""
    peer = archive.peer
    dicomnb.add_node("orthanc-qr", aet=peer.aet, host=peer.host, port=peer.port, wado_url=peer.wado_url)
    return "orthanc-qr"


@pytest.fixture
def web(archive: Archive) -> str:
    """The archive saved as a DICOMweb node."""
    dicomnb.add_node("web-qr", dicomweb=archive.peer.dicomweb_url)
    return "web-qr"


@pytest.fixture
def make_tab() -> Iterator[Callable[[], QueryTab]]:
    """Tabs (as the dialog opens them); their work and downloads stopped at the end of the test."""
    made: list[QueryTab] = []

    def make() -> QueryTab:
        made.append(QueryTab(alert=Alert()))
        return made[-1]

    yield make
    for tab in made:
        tab.worker.cancel()
        assert tab.wait(60), "the tab's work did not end"
        tab.close()
    dicomnb.downloads.pause()
    assert dicomnb.downloads.wait(timeout=10)


def css(widget: Any) -> set[str]:
    return set(widget._dom_classes)


def searched(tab: QueryTab) -> QueryResult:
    """Click Search and wait for the result the table shows."""
    tab.search_button.click()
    assert tab.wait(30), "the search did not end"
    assert tab.alert.level != "error", tab.alert.message
    assert tab.results is not None
    assert tab.table.message.value and tab.results.message.split(" in ")[0] in tab.table.message.value
    return tab.results


def names(tab: QueryTab) -> list[str]:
    """The patient names of the rows shown, sorted."""
    return sorted(row.texts["PatientName"] for row in tab.table.displayed())


def row_of(tab: QueryTab, name: str) -> StudyRow:
    return next(row for row in tab.table.displayed() if row.texts["PatientName"] == name)


def walk(widget: Any) -> Iterator[Any]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


# --- Without a server --------------------------------------------------------------------------------

def test_the_archive_choices_methods_and_css_classes(make_tab: Callable[[], QueryTab]) -> None:
    dicomnb.add_node("pacs", aet="PACS", host="127.0.0.1", port=104, wado_url="http://127.0.0.1:8042/wado")
    dicomnb.add_node("plain", aet="PLAIN", host="127.0.0.1", port=105)
    dicomnb.add_node("cloud", dicomweb="http://127.0.0.1:8042/dicom-web")
    tab = make_tab()
    assert QueryTab.title == "Query/Retrieve"
    labels = [label for label, _ in tab.node.options]
    assert [value for _, value in tab.node.options] == ["pacs", "plain", "cloud", "demo"]
    assert labels[0] == "pacs — PACS@127.0.0.1:104" and labels[-1] == DEMO_LABEL
    assert tab.node.value == "pacs" and shown(tab.method)
    assert [label for label, _ in tab.method.options] == ["C-GET", "C-MOVE", "WADO-URI"]
    tab.node.value = "plain"  # no WADO-URI URL: no WADO-URI
    assert [value for _, value in tab.method.options] == ["c-get", "c-move"]
    tab.method.value = "c-move"
    tab.node.value = "cloud"  # DICOMweb: WADO-RS, nothing to choose
    assert not shown(tab.method) and tab.method.disabled and tab.method.value == "wado-rs"
    tab.node.value = "demo"
    assert shown(tab.method) and [value for _, value in tab.method.options] == ["c-get", "c-move"]
    # More options: the node editor shows the archive chosen
    assert not shown(tab.more_panel)
    tab.node.value = "pacs"
    tab.more.value = True
    assert shown(tab.more_panel)
    assert (tab.editor.name.value, tab.editor.aet.value, tab.editor.port.value, tab.editor.url.value) == (
        "pacs", "PACS", "104", "http://127.0.0.1:8042/wado")
    tab.node.value = "cloud"
    assert (tab.editor.name.value, tab.editor.aet.value, tab.editor.url.value) == (
        "cloud", "", "http://127.0.0.1:8042/dicom-web")
    assert "DICOMweb" in tab.editor.kind.value
    expected = {
        tab: "dicomnb-qr", tab.node: "dicomnb-qr-node", tab.method: "dicomnb-qr-method",
        tab.calling.aet: "dicomnb-qr-calling", tab.calling.port: "dicomnb-qr-calling-port", tab.more: "dicomnb-qr-more",
        tab.editor.name: "dicomnb-nodes-name", tab.editor.aet: "dicomnb-nodes-aet",
        tab.editor.host: "dicomnb-nodes-host", tab.editor.port: "dicomnb-nodes-port",
        tab.editor.url: "dicomnb-nodes-url", tab.editor.save: "dicomnb-nodes-save",
        tab.editor.remove: "dicomnb-nodes-remove", tab.editor.test: "dicomnb-nodes-test",
        tab.editor.result: "dicomnb-nodes-result", tab.criteria.field: "dicomnb-criteria-field",
        tab.criteria.text: "dicomnb-criteria-text", tab.criteria.modalities: "dicomnb-criteria-modalities",
        tab.criteria.period: "dicomnb-criteria-period", tab.criteria.date_from: "dicomnb-criteria-from",
        tab.criteria.date_to: "dicomnb-criteria-to", tab.criteria.preset: "dicomnb-criteria-preset",
        tab.criteria.save: "dicomnb-criteria-save", tab.criteria.delete: "dicomnb-criteria-delete",
        tab.limit: "dicomnb-qr-limit", tab.page: "dicomnb-qr-page", tab.search_button: "dicomnb-qr-search",
        tab.clear_button: "dicomnb-qr-clear", tab.import_button: "dicomnb-qr-import", tab.table: "dicomnb-results",
        tab.table.select_all: "dicomnb-results-select-all", tab.table.prev: "dicomnb-results-prev",
        tab.table.next: "dicomnb-results-next", tab.table.message: "dicomnb-results-message",
    }
    for widget, name in expected.items():
        assert name in css(widget), name
    row = tab.table.study_rows[0]
    assert {"dicomnb-results-row"} <= css(row) and "dicomnb-results-select" in css(row.select)
    assert "dicomnb-results-expand" in css(row.expand)
    assert [tab.search_button.description, tab.clear_button.description, tab.import_button.description] == [
        "Search", "Clear", "Import"]
    assert tab.limit.value == DEFAULT_LIMIT and tab.page.value == 1
    # every widget of the tab is in it once: nothing is shown twice or left out
    assert len({id(w) for w in walk(tab)}) == len(list(walk(tab)))


def test_the_calling_node_is_saved_and_a_bad_one_is_refused(make_tab: Callable[[], QueryTab]) -> None:
    tab = make_tab()
    assert (tab.calling.aet.value, tab.calling.port.value) == ("DICOMNB", 11113)
    tab.calling.aet.value = "VIEWER"
    tab.calling.port.value = 11200
    assert (NodeStore.load().calling.aet, NodeStore.load().calling.port) == ("VIEWER", 11200)
    assert make_tab().calling.aet.value == "VIEWER"  # opened again: the saved one
    tab.calling.aet.value = "A" * 17
    assert tab.alert.level == "error" and "16 at most" in tab.alert.message
    assert tab.calling.aet.value == "VIEWER" and NodeStore.load().calling.aet == "VIEWER"


def test_criteria_fields_dates_and_clear(make_tab: Callable[[], QueryTab]) -> None:
    tab = make_tab()
    form = tab.criteria
    form.text.value = "Doe*"
    form.field.value = "patient_id"  # each field keeps its text; the box shows the field picked
    assert form.text.value == "" and "Patient name: Doe*" in form.summary.value
    form.text.value = "12345"
    form.field.value = "patient_name"
    assert form.text.value == "Doe*" and "Patient ID: 12345" in form.summary.value
    form.modalities.value = ("CT", "MR")
    form.period.value = "last-week"
    criteria = form.criteria()
    assert (criteria.patient_name, criteria.patient_id, criteria.modalities) == ("Doe*", "12345", ("CT", "MR"))
    assert criteria.period is dicomnb.Period.LAST_WEEK and criteria.date_from is None
    form.date_to.value = date(2021, 12, 31)  # picking a date means custom dates
    assert form.period.value == CUSTOM
    form.date_from.value = date(2022, 1, 1)
    tab.search_button.click()  # from after to: refused before anything is sent
    assert tab.alert.level == "error" and "swap them" in tab.alert.message and tab.results is None
    form.date_from.value = date(2020, 1, 1)
    assert (form.criteria().date_from, form.criteria().date_to, form.criteria().period) == (
        date(2020, 1, 1), date(2021, 12, 31), None)
    form.period.value = "today"  # a named period replaces the dates
    assert form.date_from.value is None and form.date_to.value is None
    tab.page.value = 3
    tab.table.show_rows([{"StudyInstanceUID": "1.2.3", "PatientName": "Doe^J"}], "1 study")
    tab.clear_button.click()
    assert form.criteria() == dicomnb.SearchCriteria() and form.preset.value == EMPTY
    assert form.text.value == "" and form.modalities.value == () and form.period.value == "all"
    assert tab.table.displayed() == [] and tab.results is None and tab.page.value == 1
    assert dicomnb.presets().last_chosen == EMPTY
    assert not shown(tab.alert)


def test_series_selection_within_a_study() -> None:
    asked: list[str] = []
    table = ResultsTable(on_expand=asked.append)
    table.show_rows([{"StudyInstanceUID": f"1.{n}", "PatientName": f"P^{n}"} for n in range(3)], "3 studies")
    assert table.message.value and "3 studies" in table.message.value
    first = table.displayed()[0]
    first.expand.click()
    assert asked == ["1.0"] and table.is_expanded("1.0") and first.expand.description == "▾"
    table.set_series("1.0", [{"SeriesInstanceUID": f"1.0.{n}", "SeriesNumber": n, "Modality": "CT"}
                             for n in (3, 1, 2)])  # shown by series number
    rows = table.series_rows("1.0")
    assert [row.texts["SeriesNumber"] for row in rows] == ["1", "2", "3"]
    assert all("dicomnb-results-series-row" in css(row) for row in rows)
    first.select.value = True  # the study: all its series
    assert all(row.select.value for row in table.series_rows("1.0"))
    assert table.selection() == [("1.0", None)]
    second = table.series_rows("1.0")[1]
    second.select.value = False  # one series less: those series only
    assert table.series_rows("1.0")[1] is second  # the box clicked stays (it is not made again)
    assert not first.select.value and table.selection() == [("1.0", ("1.0.1", "1.0.3"))]
    assert table.selected_text.value == "2 series of 1 study selected"
    table.series_rows("1.0")[1].select.value = True  # all again: the study
    assert first.select.value and table.selection() == [("1.0", None)]
    table.displayed()[2].select.value = True
    assert table.selection() == [("1.0", None), ("1.2", None)] and not table.select_all.value
    table.displayed()[1].select.value = True
    assert table.select_all.value
    table.select_all.value = False
    assert table.selection() == [] and table.selected_text.value == ""
    first.expand.click()  # collapsed: no series rows; expanded again: known, not asked again
    assert table.series_rows("1.0") == [] and not table.is_expanded("1.0")
    first.expand.click()
    assert asked == ["1.0"] and len(table.series_rows("1.0")) == 3


def test_a_tick_while_another_thread_fills_the_table_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    table = ResultsTable(on_expand=lambda uid: None)
    table.show_rows([{"StudyInstanceUID": f"1.{n}", "PatientName": f"P^{n}"} for n in range(3)], "3 studies")
    table.expand("1.0")
    other = table.displayed()[1]
    inside, release = threading.Event(), threading.Event()
    real_fill = table._fill_series

    def slow_fill(row: StudyRow, box: Any) -> None:
        if threading.current_thread().name == "series listing":
            inside.set()
            assert release.wait(10)
        real_fill(row, box)

    monkeypatch.setattr(table, "_fill_series", slow_fill)
    listing = threading.Thread(target=table.set_series, name="series listing",
                               args=("1.0", [{"SeriesInstanceUID": "1.0.1", "SeriesNumber": 1}]))
    listing.start()
    assert inside.wait(5)  # the series arrived: the table shows them (from the listing's thread)
    tick = threading.Thread(target=setattr, args=(other.select, "value", True), name="kernel")
    tick.start()  # meanwhile the user ticks another study
    tick.join(0.5)
    release.set()
    listing.join(5)
    tick.join(5)
    assert other.select.value and table.selection() == [("1.1", None)]
    assert table.selected_text.value == "1 study selected"


def series_note(table: ResultsTable, row: StudyRow) -> str:
    """What an expanded study says in place of its series."""
    box = table.body.children[table.body.children.index(row) + 1]
    return " ".join(child.value for child in box.children if "dicomnb-results-series-note" in css(child))


def test_a_study_whose_series_could_not_be_listed_is_listed_again_when_expanded_again() -> None:
    asked: list[str] = []
    table = ResultsTable(on_expand=asked.append)
    table.show_rows([{"StudyInstanceUID": "1.0", "PatientName": "P^0"}], "1 study")
    row = table.displayed()[0]
    row.expand.click()
    assert asked == ["1.0"] and "Listing the series" in series_note(table, row)
    row.expand.click()
    row.expand.click()  # while it is being listed: not asked twice
    assert asked == ["1.0"]
    table.set_series("1.0", None, "The series could not be listed: connection refused")
    assert "connection refused" in series_note(table, row)
    row.expand.click()
    row.expand.click()  # the archive is back: collapse and expand to try again
    assert asked == ["1.0", "1.0"] and "Listing the series" in series_note(table, row)
    table.set_series("1.0", [{"SeriesInstanceUID": "1.0.1", "SeriesNumber": 1}])
    assert [r.uid for r in table.series_rows("1.0")] == ["1.0.1"]


def test_series_rows_made_again_leave_no_widget_open() -> None:
    table = ResultsTable(on_expand=lambda uid: None)
    table.show_rows([{"StudyInstanceUID": f"1.{n}", "PatientName": f"P^{n}"} for n in range(PAGE_SIZE + 1)])
    table.expand("1.0")
    table.set_series("1.0", [{"SeriesInstanceUID": f"1.0.{n}", "SeriesNumber": n} for n in (1, 2)])
    before = table.series_rows("1.0")
    parts = [part for row in before for widget in walk(row)
             for part in (widget, widget.layout, getattr(widget, "style", None)) if part is not None]
    table.next.click()
    table.prev.click()  # the study's series rows are made again
    assert len(table.series_rows("1.0")) == 2
    assert [part for part in parts if part.comm is not None] == []  # the old ones, closed whole


def test_the_node_editor_speaks_of_the_node_it_shows(make_tab: Callable[[], QueryTab],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    dicomnb.add_node("pacs", aet="PACS", host="127.0.0.1", port=104)
    dicomnb.add_node("cloud", dicomweb="http://127.0.0.1:8042/dicom-web")
    answering, release = threading.Event(), threading.Event()

    def slow_echo(node: Any) -> float:
        answering.set()
        assert release.wait(10)
        return 0.002

    monkeypatch.setattr(dicomnb, "echo", slow_echo)
    tab = make_tab()
    tab.node.value = "pacs"
    tab.more.value = True
    test = tab.editor.test_node()
    assert answering.wait(5)
    tab.node.value = "cloud"  # the editor shows another node before the answer comes
    release.set()
    assert test.finished.wait(5)
    assert tab.editor.name.value == "cloud" and tab.editor.result.value == "" and tab.editor.last_test is None
    # the line saying what the fields make follows the name too
    tab.editor.new.click()
    tab.editor.name.value = "demo"
    assert DEMO_LABEL in tab.editor.kind.value
    tab.editor.name.value = "pacs"
    assert tab.editor.kind.value == ""


def test_the_retry_says_so_when_nothing_is_downloaded_again() -> None:
    class NothingMissing:
        def retry_missing(self, ids: Any) -> list[Any]:
            return []  # the jobs were completed from the download panel meanwhile

    tab = QueryTab(alert=Alert(), downloads=NothingMissing())
    try:
        assert tab.retry(["job-1"]) == []
        assert tab.alert.level == "info" and "0 series" not in tab.alert.message
        assert tab.alert.message.startswith("No download was started again: nothing is missing any more")
    finally:
        tab.close()


def test_clear_empties_the_criteria_when_the_presets_cannot_be_saved(make_tab: Callable[[], QueryTab],
                                                                     isolated_config: Path) -> None:
    tab = make_tab()
    tab.criteria.text.value = "Doe*"
    tab.criteria.modalities.value = ("CT",)
    (isolated_config / "presets.json").write_text("{ not JSON")
    tab.clear_button.click()
    assert tab.criteria.criteria() == dicomnb.SearchCriteria() and tab.criteria.text.value == ""
    assert tab.criteria.modalities.value == () and tab.criteria.preset.value == EMPTY
    assert tab.alert.level == "error" and "presets.json" in tab.alert.message  # and why it was not saved


def test_ten_thousand_studies_show_one_page_of_small_widgets() -> None:
    rows = [{"StudyInstanceUID": f"1.2.826.0.1.{n}", "PatientName": f"Patient^{n:05d}", "PatientID": str(n),
             "StudyDate": "20240102", "ModalitiesInStudy": ["CT", "SEG"], "StudyDescription": "Chest " * 5}
            for n in range(10_007)]
    result = QueryResult(rows=rows, node="synthetic", limit=0)
    started = time.perf_counter()
    table = ResultsTable()
    table.show_result(result)
    made = time.perf_counter() - started
    widgets_before = len(list(walk(table)))
    html_size = sum(len(getattr(w, "value", "")) for w in walk(table) if isinstance(getattr(w, "value", None), str))
    assert len(table.displayed()) == PAGE_SIZE and widgets_before < 150
    assert html_size < 60_000  # a page of rows, never a table of 10,000
    assert [row.texts["PatientName"] for row in table.displayed()][:2] == ["Patient^00000", "Patient^00001"]
    assert table.displayed()[0].texts["StudyDate"] == "2024-01-02"
    assert table.displayed()[0].texts["ModalitiesInStudy"] == "CT, SEG"
    assert table.pages.value == "Studies 1–25 of 10007 (page 1 of 401)" and table.prev.disabled
    started = time.perf_counter()
    for _ in range(20):
        table.next.click()
    turning = time.perf_counter() - started
    assert table.displayed()[0].texts["PatientName"] == "Patient^00500"
    assert len(list(walk(table))) == widgets_before  # turning pages makes no widget
    assert made < 2 and turning < 2, (made, turning)
    table.go_to(10_000)
    assert [row.texts["PatientName"] for row in table.displayed()] == [f"Patient^{n:05d}" for n in range(10_000, 10_007)]
    assert table.next.disabled and not table.prev.disabled
    table.select_all.value = True  # every study of the result, not only the page
    assert len(table.selection()) == 10_007 and table.selected_text.value == "10,007 studies selected"
    table.displayed()[0].select.value = False
    assert len(table.selection()) == 10_006 and not table.select_all.value
    table.prev.click()
    assert all(row.select.value for row in table.displayed())


# --- Against the module's Orthanc ---------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("kind", ["dimse", "dicomweb"])
def test_criteria_narrow_the_search(request: pytest.FixtureRequest, make_tab: Callable[[], QueryTab],
                                    kind: str) -> None:
    node = request.getfixturevalue("dimse" if kind == "dimse" else "web")
    tab = make_tab()
    tab.node.value = node
    tab.limit.value = 0
    assert names(tab) == []
    searched(tab)
    assert names(tab) == EVERYONE and tab.results.node == node
    tab.criteria.text.value = "Beta*"
    searched(tab)
    assert names(tab) == ["Beta^Four", "Beta^Three"]
    tab.criteria.text.value = ""
    tab.criteria.field.value = "patient_id"
    tab.criteria.text.value = "QR005"
    searched(tab)
    assert names(tab) == ["Gamma^Five"] and row_of(tab, "Gamma^Five").texts["PatientID"] == "QR005"
    tab.criteria.text.value = ""
    tab.criteria.modalities.value = ("MR",)
    searched(tab)
    assert names(tab) == ["Alpha^Two", "Beta^Four"]
    tab.criteria.modalities.value = ("MR", "US")
    searched(tab)
    assert names(tab) == ["Alpha^Two", "Beta^Four", "Gamma^Six"]
    tab.criteria.modalities.value = ()
    tab.criteria.date_from.value = date(2020, 1, 1)
    tab.criteria.date_to.value = date(2021, 12, 31)
    searched(tab)
    assert names(tab) == ["Alpha^Two", "Beta^Three"]
    assert row_of(tab, "Beta^Three").texts["StudyDate"] == "2021-06-01"
    tab.criteria.period.value = "today"
    searched(tab)
    assert names(tab) == ["Alpha^One"]
    tab.criteria.period.value = "last-week"
    tab.criteria.modalities.value = ("MR",)
    searched(tab)
    assert names(tab) == [] and "0 studies" in tab.table.message.value


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["dimse", "dicomweb"])
def test_limit_and_pages_without_duplicates(request: pytest.FixtureRequest, make_tab: Callable[[], QueryTab],
                                            kind: str) -> None:
    node = request.getfixturevalue("dimse" if kind == "dimse" else "web")
    tab = make_tab()
    tab.node.value = node
    tab.limit.value = 3
    seen: list[str] = []
    for page in (1, 2, 3):
        tab.page.value = page
        result = searched(tab)
        assert result.page == page
        seen += names(tab)
        if page < 3:
            assert len(result.rows) == 3 and result.limited
            assert "stopped after 3 studies" in tab.table.message.value
        else:
            assert len(result.rows) == 1 and not result.limited
    assert sorted(seen) == EVERYONE  # every study once: no gap, no duplicate
    tab.limit.value = 0
    tab.page.value = 2  # a page needs a page size
    tab.search_button.click()
    assert tab.alert.level == "error" and "needs a limit" in tab.alert.message


@pytest.mark.integration
def test_presets_save_apply_on_reopen_and_delete(dimse: str, make_tab: Callable[[], QueryTab]) -> None:
    tab = make_tab()
    assert tab.criteria.preset.value == EMPTY and tab.criteria.delete.disabled  # built-in: kept
    tab.criteria.modalities.value = ("MR",)
    tab.criteria.save.click()
    assert shown(tab.criteria.save_box)
    tab.criteria.save_name.value = "Empty"
    tab.criteria.save_confirm.click()
    assert tab.alert.level == "error" and "built-in" in tab.alert.message and shown(tab.criteria.save_box)
    tab.criteria.save_name.value = "MR studies"
    tab.criteria.save_confirm.click()
    assert not shown(tab.criteria.save_box) and tab.alert.level == "success"
    assert tab.criteria.preset.value == "MR studies" and "MR studies" in tab.criteria.preset.options
    assert not tab.criteria.delete.disabled
    tab.criteria.preset.value = EMPTY
    assert tab.criteria.modalities.value == ()
    tab.criteria.preset.value = "MR studies"
    assert tab.criteria.modalities.value == ("MR",)
    # the dialog opened again: the preset chosen last applies
    again = make_tab()
    again.node.value = dimse
    assert again.criteria.preset.value == "MR studies" and again.criteria.modalities.value == ("MR",)
    searched(again)
    assert names(again) == ["Alpha^Two", "Beta^Four"]
    again.criteria.delete.click()
    assert "MR studies" not in again.criteria.preset.options and again.criteria.preset.value is None
    assert again.criteria.modalities.value == ("MR",)  # what is shown stays
    third = make_tab()
    assert third.criteria.preset.value == EMPTY and third.criteria.criteria() == dicomnb.SearchCriteria()


def one_then_wait(event: Any, release: threading.Event) -> Iterator[Any]:
    """An archive that answers one study, then takes its time over the rest."""
    from test_query import study

    yield 0xFF00, study("First^Row", "1.2.3.1")
    release.wait(30)
    yield 0x0000, None


@pytest.fixture
def slow_tab(make_tab: Callable[[], QueryTab]) -> Iterator[QueryTab]:
    """A tab on the archive node "slow", which answers one study, then takes its time over the rest."""
    require_module("pynetdicom")
    from test_query import ScriptedFind

    peer = ScriptedFind(one_then_wait)
    try:
        dicomnb.add_node("slow", aet=peer.node.aet, host=peer.node.host, port=peer.node.port)
        tab = make_tab()
        tab.node.value = "slow"
        yield tab
    finally:
        peer.close()


@pytest.mark.integration
def test_a_new_search_and_clear_cancel_the_running_one(slow_tab: QueryTab) -> None:
    tab = slow_tab
    first = tab.search()
    assert first is not None
    time.sleep(0.5)  # the first row has arrived, the rest will not
    second = tab.search()
    assert second is not None and first.cancel.is_set()
    assert first.finished.wait(5), "the first search did not stop when a new one started"
    assert first.result is not None and first.result.cancelled and len(first.result.rows) == 1
    assert tab.results is None and "Searching slow" in tab.table.message.value  # its rows are dropped
    time.sleep(0.5)
    started = time.monotonic()
    tab.clear_button.click()
    assert second.cancel.is_set() and second.finished.wait(5) and time.monotonic() - started < 5
    assert second.result is not None and second.result.cancelled
    assert tab.results is None and not shown(tab.table.message) and tab.table.displayed() == []
    assert not shown(tab.alert)


@pytest.mark.integration
def test_stop_ends_a_search_and_shows_what_it_found(slow_tab: QueryTab) -> None:
    tab = slow_tab
    search = tab.search()
    assert search is not None
    time.sleep(0.5)  # the first row has arrived, the rest will not
    assert shown(tab.busy) and "Searching slow" in tab.status.value
    assert tab.stop_button.tooltip == "Stop the search: the studies found so far are shown"
    tab.stop_button.click()
    assert search.finished.wait(5) and tab.wait(5) and not shown(tab.busy)
    assert tab.results is not None and tab.results.cancelled
    assert [row.texts["PatientName"] for row in tab.table.displayed()] == ["First^Row"]


@pytest.mark.integration
def test_select_expand_and_import(archive: Archive, dimse: str, make_tab: Callable[[], QueryTab]) -> None:
    tab = make_tab()
    tab.node.value = dimse
    tab.import_button.click()  # nothing selected yet
    assert tab.alert.level == "warning" and "Select" in tab.alert.message
    tab.limit.value = 0
    searched(tab)
    row_of(tab, "Gamma^Five").select.value = True  # a whole study
    beta = row_of(tab, "Beta^Three")
    beta.expand.click()  # its series are listed off the main thread
    assert tab.wait(30)
    series = tab.table.series_rows(archive.study["Beta^Three"])
    assert [row.uid for row in series] == list(archive.series["Beta^Three"])
    assert [row.texts["SeriesDescription"] for row in series] == ["CT series 1", "CT series 2"]
    assert [row.texts["NumberOfSeriesRelatedInstances"] for row in series] == ["2", "2"]
    series[1].select.value = True  # one series of it
    assert sorted(tab.table.selection()) == sorted([
        (archive.study["Beta^Three"], (archive.series["Beta^Three"][1],)), (archive.study["Gamma^Five"], None)])
    assert tab.method.value == "c-get"
    tab.import_button.click()
    assert tab.alert.level == "info" and "Importing 2 studies from orthanc-qr with C-GET" in tab.alert.message
    assert tab.wait(120), "the import did not end"
    wanted = {sop for sops in archive.instances["Gamma^Five"].values() for sop in sops}
    wanted |= set(archive.instances["Beta^Three"][archive.series["Beta^Three"][1]])
    assert tab.alert.level == "success", tab.alert.message
    assert tab.alert.message.startswith("Imported 11 instances in 4 series of 2 studies")
    in_catalog = set(dicomnb.catalog.instances["SOPInstanceUID"])
    assert wanted <= in_catalog
    assert not set(archive.instances["Beta^Three"][archive.series["Beta^Three"][0]]) & in_catalog
    statuses = dicomnb.downloads()
    assert len(statuses) == 4 and all(s.state == "complete" and s.node == dimse for s in statuses)
    panel = dicomnb.downloads.panel()  # one row per series imported, in the download panel
    try:
        assert sorted(row.label.value.split(" — ")[0] for row in panel.rows.values()) == [
            "CT 1: CT series 1", "CT 2: CT series 2", "CT 2: CT series 2", "CT 3: CT series 3"]
    finally:
        panel.close()


@pytest.mark.integration
def test_import_over_dicomweb(archive: Archive, web: str, make_tab: Callable[[], QueryTab]) -> None:
    tab = make_tab()
    tab.node.value = web
    tab.criteria.text.value = "Alpha^Two"
    searched(tab)
    tab.table.select_all.value = True
    tab.import_button.click()
    assert tab.wait(60)
    assert tab.alert.level == "success", tab.alert.message
    (sop,) = [s for sops in archive.instances["Alpha^Two"].values() for s in sops]
    records = dicomnb.catalog.instances
    assert list(records["SOPInstanceUID"]) == [sop] and list(records["source"]) == ["dicomweb"]


@pytest.mark.integration
def test_a_failed_c_move_offers_to_download_the_missing_files_again(archive: Archive, dimse: str,
                                                                    make_tab: Callable[[], QueryTab]) -> None:
    tab = make_tab()
    tab.node.value = dimse
    tab.calling.aet.value = "STRANGER"  # not a move destination the archive knows
    tab.method.value = "c-move"
    tab.criteria.text.value = "Beta^Four"
    searched(tab)
    tab.table.select_all.value = True
    tab.import_button.click()
    assert tab.wait(60)
    assert tab.alert.level == "error" and "STRANGER" in tab.alert.message and dimse in tab.alert.message
    assert shown(tab.alert.action) and tab.alert.action.description == RETRY_LABEL
    (status,) = dicomnb.downloads()
    assert status.state == "incomplete" and status.missing == 1
    # the fix: our AE title and port as the archive knows them; then the alert's action
    tab.more.value = True
    tab.calling.aet.value = archive.peer.move_aet
    tab.calling.port.value = archive.peer.move_port
    tab.alert.action.click()
    assert tab.alert.level == "info" and "missing files of 1 series again" in tab.alert.message
    assert dicomnb.downloads.wait(timeout=60)
    (status,) = dicomnb.downloads()
    assert status.state == "complete" and status.method == "c-move"
    (sop,) = [s for sops in archive.instances["Beta^Four"].values() for s in sops]
    assert sop in set(dicomnb.catalog.instances["SOPInstanceUID"])


@pytest.mark.integration
@pynetdicom_socket_leak
def test_connection_errors_show_in_the_alert_with_the_node_name(archive: Archive, dimse: str,
                                                                make_tab: Callable[[], QueryTab]) -> None:
    import peers

    dead = peers.free_port()
    dicomnb.add_node("deadpacs", aet="DEAD", host="127.0.0.1", port=dead)
    tab = make_tab()
    tab.node.value = "deadpacs"
    tab.search_button.click()
    assert tab.wait(30)
    assert tab.alert.level == "error" and "deadpacs (DEAD@127.0.0.1" in tab.alert.message
    assert "connection refused" in tab.alert.message and "failed" in tab.table.message.value
    assert tab.results is None and tab.table.displayed() == []
    # results found, then the archive goes away before the import
    tab.node.value = dimse
    tab.criteria.text.value = "Delta*"
    searched(tab)
    tab.table.select_all.value = True
    dicomnb.add_node(dimse, aet=archive.peer.aet, host="127.0.0.1", port=dead, replace=True)
    tab.import_button.click()
    assert tab.wait(60)
    assert tab.alert.level == "error" and f"{dimse} ({archive.peer.aet}@127.0.0.1:{dead})" in tab.alert.message
    assert not shown(tab.alert.action)  # nothing was listed: no download to retry
    assert dicomnb.catalog.instances.empty


@pytest.mark.integration
@pynetdicom_socket_leak
def test_node_editor_add_test_edit_remove(archive: Archive, make_tab: Callable[[], QueryTab]) -> None:
    import peers

    peer = archive.peer
    tab = make_tab()
    editor = tab.editor
    tab.more.value = True
    editor.new.click()
    editor.name.value, editor.aet.value = "pacs", peer.aet
    editor.save.click()  # half a DIMSE node
    assert tab.alert.level == "error" and "needs an AE title, a host and a port" in tab.alert.message
    editor.host.value, editor.port.value = "127.0.0.1", str(peer.port)
    editor.test.click()
    assert editor.wait(30) and editor.last_test is True
    assert "pacs answered the C-ECHO in" in editor.result.value
    editor.save.click()
    assert tab.alert.level == "success" and tab.node.value == "pacs"
    assert dicomnb.get_node("pacs").describe() == f"{peer.aet}@127.0.0.1:{peer.port}"
    editor.new.click()
    editor.name.value, editor.url.value = "cloud", peer.dicomweb_url
    assert "DICOMweb" in editor.kind.value
    editor.test.click()
    assert editor.wait(30) and editor.last_test is True and "cloud answered the QIDO-RS search" in editor.result.value
    editor.save.click()
    assert isinstance(dicomnb.get_node("cloud"), DicomWebNode) and tab.node.value == "cloud"
    assert not shown(tab.method)
    searched(tab)
    assert len(tab.results.rows) == len(STUDIES)
    # change the port of "pacs" to one nobody listens on: the test says so, with its name
    tab.node.value = "pacs"
    assert editor.name.value == "pacs"
    editor.port.value = str(peers.free_port())
    editor.save.click()
    editor.test.click()
    assert editor.wait(30) and editor.last_test is False
    assert "✗ pacs (" in editor.result.value and "connection refused" in editor.result.value
    tab.node.value = "cloud"
    editor.remove.click()
    assert [value for _, value in tab.node.options] == ["pacs", "demo"] and tab.node.value == "pacs"
    assert [node.name for node in dicomnb.nodes()] == ["pacs"]
    editor.name.value = "nothing"
    editor.remove.click()
    assert tab.alert.level == "error" and "no node named 'nothing'" in tab.alert.message


@pytest.mark.integration
def test_the_demo_archive_starts_on_first_search(make_tab: Callable[[], QueryTab]) -> None:
    require_module("pynetdicom")
    require_module("sqlalchemy")
    import dicomnb.demo

    tab = make_tab()
    assert tab.node.value == "demo" and dicomnb.demo.running() is None
    try:
        tab.criteria.text.value = "Doe^Peter"
        searched(tab)
        assert dicomnb.demo.running() is not None and tab.results.node == "demo"
        assert names(tab) and set(names(tab)) == {"Doe^Peter"}
        assert [value for _, value in tab.node.options] == ["demo"]  # listed once, as the demo archive
        assert tab.node.options[0][0] == DEMO_LABEL
    finally:
        dicomnb.demo.stop()
