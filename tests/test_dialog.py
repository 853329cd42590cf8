"""The import dialog without a browser: the Local, ZIP and DICOMDIR tabs, the alert, the explorer.

Buttons are clicked and values set from Python, as a user's clicks would; each tab's work
runs off the main thread and is waited for with ``tab.wait()``.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import ipywidgets
import pytest
import pyzipper

import dicomnb
from dicomnb.widgets.common import Alert, Worker, shown
from dicomnb.widgets.dialog import TAB_TITLES, ImportDialog
from dicomnb.widgets.explorer import EXPLORER_SERIES, Explorer
from dicomnb.widgets.files import DicomdirTab, LocalTab, PathField, ZipTab

WAIT = 60


@pytest.fixture
def dialog() -> ImportDialog:
    made = dicomnb.dialog(display=False)
    yield made
    made.wait(WAIT)
    made.close()


def test_the_dialog_has_the_five_tabs_and_the_panels_under_them(dialog: ImportDialog) -> None:
    assert tuple(dialog.tabs.titles) == TAB_TITLES == ("Local", "ZIP", "DICOMDIR", "Drop", "Query/Retrieve")
    assert [type(tab).title for tab in dialog.tabs.children] == list(TAB_TITLES)
    assert dialog.children == (dialog.tabs, dialog.alert, dialog.downloads, dialog.explorer)
    assert "dicomnb-dialog" in dialog._dom_classes and not shown(dialog.alert)
    assert dialog.select("ZIP") is dialog.zip and dialog.tabs.selected_index == 1


def test_local_import_shows_the_catalog_and_opens_the_first_series(dialog: ImportDialog, sample_tree: Path) -> None:
    tab = dialog.local
    tab.path.value = str(sample_tree)
    tab.open_after.value = True
    tab.import_button.click()
    assert tab.wait(WAIT)
    assert len(dicomnb.catalog.instances) == 4
    assert shown(dialog.alert) and dialog.alert.level == "success"
    assert dialog.alert.message.startswith("Imported 4 instances in 4 series of ")
    # the explorer: a row per series, with a thumbnail once made
    rows = [w for block in dialog.explorer.tree.children for w in getattr(block, "children", ())
            if "dicomnb-explorer-series" in w._dom_classes]
    assert len(rows) == 4
    assert dialog.explorer.wait_thumbnails(WAIT)
    thumbs = dialog.explorer.thumbnails
    ct = dicomnb.catalog.series.set_index("Modality").loc["CT", "SeriesInstanceUID"]
    assert bytes(thumbs[ct].value).startswith(b"\x89PNG")
    # "Open after import": the first series is drawn in the viewer
    assert [o["output_type"] for o in dialog.explorer.viewer.outputs] == ["display_data"]
    assert dialog.explorer.shown.kind == "image"
    assert '<img src="data:image/png;base64,' in dialog.explorer.viewer.outputs[0]["data"]["text/html"]


def test_not_recursive_reads_the_top_folder_only(dialog: ImportDialog, sample_tree: Path) -> None:
    dialog.local.path.value = str(sample_tree)
    dialog.local.recursive.value = False
    dialog.local.import_()
    assert dialog.local.wait(WAIT)
    assert list(dicomnb.catalog.instances["path"]) == [str(sample_tree / "CT_small.dcm")]


def test_unreadable_files_give_a_warning_with_details(dialog: ImportDialog, sample_tree: Path,
                                                      test_files: Path) -> None:
    broken = sample_tree / "broken"
    broken.mkdir()
    for index in range(3):
        data = (test_files / "CT_small.dcm").read_bytes()
        (broken / f"cut{index}.dcm").write_bytes(data[:len(data) // 3])
    dialog.local.path.value = f"{sample_tree}\n{broken}"
    dialog.local.import_button.click()
    assert dialog.local.wait(WAIT)
    alert = dialog.alert
    assert alert.level == "warning" and "3 DICOM files cannot be read" in alert.message
    assert len(alert.details) == 3 and all("cut" in line for line in alert.details)
    assert shown(alert._toggle) and not shown(alert._details)
    alert._toggle.value = True
    assert shown(alert._details) and "cut0.dcm" in alert._details.value


def test_nothing_to_import_and_a_missing_path_are_said(dialog: ImportDialog, tmp_path: Path) -> None:
    dialog.local.import_button.click()
    assert dialog.alert.level == "warning" and "Give a file or a folder" in dialog.alert.message
    dialog.local.path.value = str(tmp_path / "nowhere")
    dialog.local.import_button.click()
    assert dialog.local.wait(WAIT)
    assert dialog.alert.level == "error" and "no such file or folder" in dialog.alert.message


def test_the_path_browser_walks_folders_and_picks(sample_tree: Path) -> None:
    field = PathField("local", "paths", multiple=True)
    field.value = str(sample_tree / "CT_small.dcm")
    field.browse.value = True
    assert shown(field.browser) and field.folder == sample_tree
    labels = [label for label, _ in field.entries.options]
    assert labels[0] == "sub/" and "CT_small.dcm" in labels and "notes.txt" in labels
    field.entries.value = str(sample_tree / "sub")          # a folder: go into it
    assert field.folder == sample_tree / "sub"
    field.use_folder.click()                                  # take it, on a new line
    assert field.paths() == [str(sample_tree / "CT_small.dcm"), str(sample_tree / "sub")]
    field.up.click()
    assert field.folder == sample_tree
    only_zips = PathField("zip", "a zip", suffixes=(".zip",))
    only_zips.show_folder(sample_tree)
    assert [label for label, _ in only_zips.entries.options] == ["sub/"]


def test_a_folder_that_cannot_be_read_leaves_the_browser_where_it_was(sample_tree: Path) -> None:
    field = PathField("dicomdir", "a DICOMDIR")
    field.show_folder(sample_tree)
    listed = list(field.entries.options)
    field.show_folder(sample_tree / "gone")  # removed meanwhile, or not readable
    assert field.folder == sample_tree and list(field.entries.options) == listed
    # the folder named first is the one listed, and the one "Use this folder" takes
    assert field.location.value.startswith(f"<b>{sample_tree}</b> ({sample_tree / 'gone'} cannot be read: ")
    field.use_folder.click()
    assert field.value == str(sample_tree)


@pytest.fixture
def encrypted_zip(sample_tree: Path, tmp_path: Path) -> Path:
    archive = tmp_path / "secret.zip"
    with pyzipper.AESZipFile(archive, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(b"open sesame")
        for name in ["CT_small.dcm", "sub/MRSMALL"]:
            zf.write(sample_tree / name, name)
    return archive


def test_an_encrypted_zip_asks_for_its_password_in_place(dialog: ImportDialog, encrypted_zip: Path) -> None:
    tab = dialog.zip
    assert not shown(tab.prompt)
    tab.path.value = str(encrypted_zip)
    tab.import_button.click()
    assert tab.wait(WAIT)
    assert shown(tab.prompt) and "secret.zip is encrypted" in tab.reason.value
    assert len(dicomnb.catalog.instances) == 0
    tab.password.value = "wrong"
    tab.unlock.click()
    assert tab.wait(WAIT)
    assert shown(tab.prompt) and "does not open secret.zip" in tab.reason.value and tab.password.value == ""
    tab.password.value = "open sesame"
    tab.unlock.click()
    assert tab.wait(WAIT)
    assert not shown(tab.prompt) and tab.password.value == ""
    assert len(dicomnb.catalog.instances) == 2 and dialog.alert.level == "success"


def test_an_uploaded_zip_is_kept_in_the_cache_and_imported(dialog: ImportDialog, sample_tree: Path,
                                                           tmp_path: Path, isolated_cache: Path) -> None:
    archive = tmp_path / "plain.zip"
    with pyzipper.ZipFile(archive, "w") as zf:
        zf.write(sample_tree / "CT_small.dcm", "CT_small.dcm")
    tab = dialog.zip
    tab.upload.value = ({"name": "plain.zip", "type": "application/zip", "size": archive.stat().st_size,
                         "content": memoryview(archive.read_bytes()),
                         "last_modified": datetime.now(timezone.utc)},)
    kept = Path(tab.path.value)
    assert kept.is_file() and kept.read_bytes() == archive.read_bytes() and isolated_cache in kept.parents
    assert tab.upload.value == ()
    tab.import_button.click()
    assert tab.wait(WAIT)
    assert len(dicomnb.catalog.instances) == 1


def test_dicomdir_media_show_their_tree_with_missing_files(dialog: ImportDialog, test_files: Path,
                                                            tmp_path: Path) -> None:
    media = tmp_path / "cd"
    shutil.copytree(test_files / "dicomdirtests", media)
    gone = sorted((media / "77654033").rglob("*"))[-1]
    assert gone.is_file()
    gone.unlink()
    tab = dialog.dicomdir
    found = tab.detect_media([str(tmp_path)])
    assert found == [media] and tab.path.value == str(media)
    tab.copy.value = True
    tab.import_button.click()
    assert tab.wait(WAIT)
    assert "1 file named by the DICOMDIR is missing" in dialog.alert.message and dialog.alert.level == "warning"
    assert tab.tree.value.count("dicomnb-dicomdir-missing") == 2  # the series' count and the file
    assert gone.name in tab.tree.value and "Patient" in tab.tree.value
    assert len(dicomnb.catalog.instances) == 30
    assert not tab.detect_media([str(tmp_path / "empty")]) and "No CD/DVD" in dialog.alert.message


def test_the_explorer_shows_the_catalogs_dataframes_a_page_at_a_time(sample_tree: Path) -> None:
    dicomnb.import_local(sample_tree)
    explorer = Explorer(dicomnb.catalog)
    explorer.view.value = "Series"
    assert not shown(explorer.tree) and shown(explorer.frame_box)
    assert "4 rows; page 1 of 1" in explorer.table.value and "SeriesInstanceUID" in explorer.table.value
    assert explorer.frame().equals(dicomnb.catalog.series)
    explorer.view.value = "Explorer"
    assert shown(explorer.tree)


def test_the_explorer_lists_a_bounded_number_of_series(test_files: Path, tmp_path: Path) -> None:
    import pydicom
    from pydicom.uid import generate_uid

    folder = tmp_path / "many"
    folder.mkdir()
    ds = pydicom.dcmread(test_files / "CT_small.dcm")
    for index in range(EXPLORER_SERIES + 5):
        ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
        ds.save_as(folder / f"{index}.dcm")
    dicomnb.import_local(folder)
    made: list[str] = []
    explorer = Explorer(dicomnb.catalog, thumbnail=lambda uid: made.append(uid) or None)
    assert explorer.wait_thumbnails(WAIT)
    assert len(explorer.thumbnails) == len(made) == EXPLORER_SERIES
    assert "… and 5 more series" in explorer.tree.children[-1].value


def test_a_new_piece_of_work_cancels_the_running_one() -> None:
    alert = Alert()
    worker = Worker(alert)
    started, results = threading.Event(), []

    def slow(cancel: threading.Event) -> str:
        started.set()
        cancel.wait(10)
        return "slow"

    first = worker.run("slow", slow, results.append)
    assert started.wait(5)
    worker.run("fast", lambda cancel: "fast", results.append)
    assert worker.wait(5) and first.finished.wait(5)
    assert first.cancel.is_set() and results == ["fast"]  # the replaced work's result is dropped

    def failing(cancel: threading.Event) -> None:
        raise dicomnb.errors.ConnectionFailed("Connection to ORTHANC failed: refused")

    worker.run("query", failing)
    assert worker.wait(5)
    assert shown(alert) and alert.level == "error" and alert.message == "Connection to ORTHANC failed: refused"

    def deaf(cancel: threading.Event) -> str:
        started.set()
        time.sleep(0.3)  # does not look at its cancel
        return "deaf"

    started.clear()
    last = worker.run("deaf", deaf, results.append)
    assert started.wait(5)
    worker.cancel()
    assert worker.wait(5) and last.finished.is_set()  # waited for its thread to end, cancelled as it was
    assert results == ["fast"]


def test_an_alert_action_runs_once_and_the_alert_goes() -> None:
    alert = Alert()
    called: list[int] = []
    alert.show("2 instances did not arrive", "warning", action=("Download the missing files again",
                                                                 lambda: called.append(1)))
    assert shown(alert.action) and alert.action.description == "Download the missing files again"
    alert.action.click()
    assert called == [1] and not shown(alert)


def test_work_runs_off_the_main_thread(dialog: ImportDialog, sample_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    real_get = dicomnb.api.get

    def spy(*args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread().name)
        time.sleep(0.3)
        return real_get(*args, **kwargs)

    monkeypatch.setattr(dicomnb.api, "get", spy)
    dialog.local.path.value = str(sample_tree)
    started = time.monotonic()
    dialog.local.import_button.click()
    assert time.monotonic() - started < 0.2 and shown(dialog.local.busy)  # the click returns at once
    assert dialog.local.wait(WAIT) and not shown(dialog.local.busy)
    assert threads == ["dicomnb-Import"]


def test_a_long_import_counts_what_it_read_and_can_be_stopped(dialog: ImportDialog,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import TEST_FILES

    monkeypatch.setattr("dicomnb.core.catalog.PROGRESS_INTERVAL", 0.0)
    tab = dialog.local
    lines: list[str] = []
    real_progress = tab.progress

    def progress(report: dicomnb.ImportReport) -> None:
        real_progress(report)
        lines.append(tab.status.value)
        if len(report.instances) >= 3 and shown(tab.busy):
            tab.stop_button.click()  # as the user would, while the line counts

    monkeypatch.setattr(tab, "progress", progress)
    tab.path.value = str(TEST_FILES)
    tab.import_button.click()
    assert tab.wait(WAIT) and not shown(tab.busy)
    assert any("Reading… 3 instances" in line for line in lines)
    assert dialog.alert.level == "warning" and dialog.alert.message.startswith("Import stopped: imported ")
    assert 3 <= len(dicomnb.catalog.instances) <= 5  # what was read stays


def test_tabs_work_without_a_dialog(sample_tree: Path) -> None:
    alert = Alert()
    for tab in (LocalTab(alert=alert), ZipTab(alert=alert), DicomdirTab(alert=alert)):
        assert f"dicomnb-{type(tab).title.lower()}" in tab._dom_classes
    local = LocalTab(alert=alert)
    local.path.value = str(sample_tree)
    local.import_()
    assert local.wait(WAIT) and alert.message.startswith("Imported 4 instances")


def test_a_dialog_opened_in_a_cell_shows_once(tmp_path: Path) -> None:
    """``dicomnb.dialog()`` displays the dialog and returns it: the cell's result must not show it twice."""
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[new_code_cell("import dicomnb\ndicomnb.dialog()"), new_code_cell("d = dicomnb.dialog()"),
                                   new_code_cell("d")])
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    views = [[o.output_type for o in cell.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
             for cell in notebook.cells]
    assert views == [["display_data"], ["display_data"], ["execute_result"]]
    assert notebook.cells[0].outputs[-1]["data"] == {"text/plain": "<dicomnb import dialog: 0 instances in the catalog>"}
    nbformat.validate(notebook)


def every_widget(widget: object) -> Iterator[object]:
    """``widget`` and all it holds: its children (each with all it holds), its layout and style."""
    yield widget
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if part is not None and hasattr(part, "comm"):
            yield part
    for child in getattr(widget, "children", ()):
        yield from every_widget(child)


def test_the_busy_line_is_hidden_once_the_work_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from dicomnb.widgets import common

    real_show = common.show

    def slow_to_hide(widget: object, visible: bool) -> None:
        if not visible and threading.current_thread() is not threading.main_thread():
            time.sleep(0.3)  # a busy kernel: the worker thread hides the line late
        real_show(widget, visible)

    monkeypatch.setattr(common, "show", slow_to_hide)
    busy = ipywidgets.HTML("Working…")
    worker = Worker(Alert(), busy)
    worker.run("quick", lambda cancel: "done")
    assert worker.wait(5) and not shown(busy)


def test_an_import_replaced_by_another_does_not_ask_for_its_password(
        dialog: ImportDialog, encrypted_zip: Path, sample_tree: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain.zip"
    with pyzipper.ZipFile(plain, "w") as zf:
        zf.write(sample_tree / "CT_small.dcm", "CT_small.dcm")
    reading, release = threading.Event(), threading.Event()
    real_import_zip = dicomnb.api.import_zip

    def slow_for_the_encrypted_one(path: str, **options: object) -> dicomnb.ImportReport:
        if Path(path) == encrypted_zip:
            reading.set()
            assert release.wait(30)
        return real_import_zip(path, **options)

    monkeypatch.setattr(dicomnb.api, "import_zip", slow_for_the_encrypted_one)
    tab = dialog.zip
    tab.path.value = str(encrypted_zip)
    tab.import_button.click()
    assert reading.wait(10)
    first = tab.worker._task
    tab.path.value = str(plain)  # the user chose another archive meanwhile
    tab.import_button.click()
    assert tab.wait(WAIT) and dialog.alert.level == "success" and len(dicomnb.catalog.instances) == 1
    release.set()  # the first import now finds its archive encrypted
    assert first is not None and first.finished.wait(WAIT)
    assert not shown(tab.prompt), tab.reason.value  # it was replaced: it has nothing to ask
    assert dialog.alert.level == "success"
    # the prompt names the archive it is about: choosing another one takes it away
    tab.path.value = str(encrypted_zip)
    tab.import_button.click()
    assert tab.wait(WAIT) and shown(tab.prompt)
    tab.password.value = "typed"
    tab.path.value = str(plain)
    assert not shown(tab.prompt) and tab.password.value == ""


def test_a_failed_dicomdir_import_does_not_show_the_last_ones_tree(dialog: ImportDialog, test_files: Path,
                                                                   tmp_path: Path) -> None:
    tab = dialog.dicomdir
    for name in ("cd", "dvd"):
        shutil.copytree(test_files / "dicomdirtests", tmp_path / name)
    assert tab.detect_media([str(tmp_path)]) == [tmp_path / "cd", tmp_path / "dvd"]
    assert dialog.alert.message == f"Found 2 media with a DICOMDIR: {tmp_path / 'cd'}"
    tab.import_button.click()
    assert tab.wait(WAIT) and "Patient" in tab.tree.value
    tab.path.value = str(tmp_path / "nowhere")
    tab.import_button.click()
    assert tab.wait(WAIT) and dialog.alert.level == "error"
    assert tab.tree.value == ""  # the tree shown was of another DICOMDIR


def test_detect_cd_rom_looks_off_the_main_thread(dialog: ImportDialog, test_files: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import dicomnb.sources.dicomdir

    media = tmp_path / "cd"
    shutil.copytree(test_files / "dicomdirtests", media)
    spinning, threads = threading.Event(), []

    def slow_drive(roots: object = None) -> list[Path]:
        threads.append(threading.current_thread().name)
        assert spinning.wait(10)  # a CD spinning up
        return [media]

    monkeypatch.setattr(dicomnb.sources.dicomdir, "detect_cdrom", slow_drive)
    tab = dialog.dicomdir
    started = time.monotonic()
    tab.detect.click()
    assert time.monotonic() - started < 0.5  # the click returns at once: the notebook does not freeze
    assert tab.detect.disabled and tab.detect.description == "Detecting…"
    spinning.set()
    assert tab.wait(WAIT)
    assert tab.path.value == str(media) and not tab.detect.disabled and tab.detect.description == "Detect CD-ROM"
    assert threads == ["dicomnb-Detect CD-ROM"]


def test_closing_the_dialog_stops_its_work_removes_a_drop_under_way_and_closes_every_widget(
        isolated_cache: Path, sample_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = dicomnb.dialog(display=False)
    reading, stopped = threading.Event(), threading.Event()

    def endless(paths: object, *, cancel: threading.Event, **options: object) -> dicomnb.ImportReport:
        reading.set()
        if cancel.wait(10):
            stopped.set()
        return dicomnb.ImportReport(stopped=True)

    monkeypatch.setattr(dicomnb.api, "get", endless)
    made.local.path.value = str(sample_tree)
    made.local.import_button.click()
    assert reading.wait(10)
    zone = made.drop.zone
    zone.receive({"kind": "begin", "drop": "d", "items": [{"name": "study", "folder": True}], "count": 1,
                  "bytes": 100})
    zone.receive({"kind": "file", "drop": "d", "path": "study/CT", "size": 100, "offset": 0, "index": 0,
                  "count": 1}, [b"x" * 50])  # half of it: the page was closed before the rest came
    assert any(path.is_file() for path in (isolated_cache / "dropped").rglob("*"))
    everything = list(every_widget(made))
    assert all(widget.comm is not None for widget in everything)

    made.close()
    assert stopped.wait(5)  # the import under way was told to stop
    assert not any((isolated_cache / "dropped").iterdir())  # the half drop is gone
    assert [widget for widget in everything if widget.comm is not None] == []


def test_the_explorer_lists_the_images_an_import_brought(sample_tree: Path) -> None:
    dicomnb.import_local(sample_tree)
    explorer = Explorer(dicomnb.catalog, thumbnail=lambda uid: None)
    assert "Images" in explorer.view.options
    explorer.view.value = "Images"
    assert "1 rows; page 1 of 1" in explorer.table.value and "photo.png" in explorer.table.value
    explorer.close()


def test_waiting_for_thumbnails_ends_when_the_catalog_was_emptied(sample_tree: Path) -> None:
    dicomnb.import_local(sample_tree)
    release = threading.Event()
    explorer = Explorer(dicomnb.catalog, thumbnail=lambda uid: release.wait(10) and None)
    try:
        assert not explorer.wait_thumbnails(0.1)  # making them: slow
        dicomnb.catalog.clear()
        explorer.refresh()
        assert "Nothing imported yet" in explorer.tree.children[0].value
        assert explorer.wait_thumbnails(2)  # no series: no thumbnail to wait for
    finally:
        release.set()
        explorer.close()


class HeldCatalog:
    """The catalog, with the first look at its series held until ``go`` is set."""

    def __init__(self) -> None:
        self.hold = False
        self.reading, self.go = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(dicomnb.catalog, name)

    @property
    def series(self) -> object:
        frame = dicomnb.catalog.series
        if self.hold:
            self.hold = False
            self.reading.set()
            assert self.go.wait(10)
        return frame


def explorer_rows(explorer: Explorer) -> list[object]:
    return [w for block in explorer.tree.children for w in getattr(block, "children", ())
            if "dicomnb-explorer-series" in w._dom_classes]


def test_an_older_look_at_the_catalog_never_replaces_a_newer_one(sample_tree: Path) -> None:
    catalog = HeldCatalog()
    explorer = Explorer(catalog, thumbnail=lambda uid: None)
    catalog.hold = True
    older = threading.Thread(target=explorer.refresh, name="older import")
    older.start()
    assert catalog.reading.wait(5)  # it has read the catalog, empty then
    dicomnb.import_local(sample_tree)
    newer = threading.Thread(target=explorer.refresh, name="newer import")
    newer.start()
    newer.join(0.5)
    catalog.go.set()
    older.join(10)
    newer.join(10)
    assert len(explorer_rows(explorer)) == 4  # the newer look stays
    # a refresh closes the widgets of the tree it replaces
    before = explorer_rows(explorer)
    explorer.refresh()
    assert [w for row in before for w in every_widget(row) if w.comm is not None] == []
    assert all(row.comm is not None for row in explorer_rows(explorer))
    explorer.close()
