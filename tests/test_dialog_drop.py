"""The dialog's Drop tab without a browser: the browser's messages, fed to the zone as ipywidgets
delivers them (a custom comm message and its binary buffers), land files in a staging folder
that the core's drop rules and import then take. The browser test proves the JavaScript side.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from conftest import TEST_FILES

import dicomnb
from dicomnb.core.drop import ACCEPTED
from dicomnb.core.report import ImportReport
from dicomnb.widgets.common import Alert
from dicomnb.widgets.droptab import DropTab
from dicomnb.widgets.dropzone import CHUNK_BYTES, DROP_ZONE_CSS, DROP_ZONE_ESM

Files = Sequence[tuple[str, bytes]]


class Dialog:
    """A Drop tab with the dialog's alert, the reports handed to the dialog and the zone's answers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, to_dialog: bool = False) -> None:
        self.alert = Alert()
        self.reports: list[tuple[ImportReport, bool]] = []
        imported = (lambda report, open_after: self.reports.append((report, open_after))) if to_dialog else None
        self.tab = DropTab(alert=self.alert, imported=imported)
        self.answers: list[dict[str, Any]] = []
        # what the zone sends the browser, recorded instead of going out on a comm
        monkeypatch.setattr(self.tab.zone, "send", lambda content, buffers=None: self.answers.append(content))

    def deliver(self, content: dict[str, Any], buffers: Sequence[bytes] = ()) -> None:
        """One custom message from the browser, handed over the way ipywidgets hands it to the widget."""
        self.tab.zone._handle_msg({"content": {"data": {"method": "custom", "content": content}},
                                   "buffers": [memoryview(buffer) for buffer in buffers]})

    def drop(self, items: Sequence[tuple[str, bool]], files: Files, *, drop: str = "drop-1",
             chunk: int = CHUNK_BYTES, wait: bool = True) -> None:
        """What the zone's drop handler sends: begin, each file in pieces of ``chunk`` bytes, end;
        then (``wait``) wait for the import."""
        self.deliver({"kind": "begin", "drop": drop, "items": [{"name": n, "folder": f} for n, f in items],
                      "count": len(files), "bytes": sum(len(data) for _, data in files)})
        for index, (path, data) in enumerate(files):
            offset = 0
            while True:
                piece = data[offset:offset + chunk]
                self.deliver({"kind": "file", "drop": drop, "path": path, "size": len(data), "offset": offset,
                              "index": index, "count": len(files)}, [piece])
                offset += len(piece)
                if offset >= len(data):
                    break
        self.deliver({"kind": "end", "drop": drop, "count": len(files)})
        if wait:
            assert self.tab.wait(60)


def folder_files(root: Path, name: str) -> list[tuple[str, bytes]]:
    """The files of ``root`` as a dropped folder called ``name`` sends them."""
    return [(f"{name}/{path.relative_to(root).as_posix()}", path.read_bytes())
            for path in sorted(root.rglob("*")) if path.is_file()]


def nothing_staged(cache: Path) -> bool:
    """No drop is kept in the staging folder (it may not even have been made)."""
    return not (cache / "dropped").exists() or not any((cache / "dropped").iterdir())


def staged_files(cache: Path) -> list[Path]:
    return sorted(path for path in (cache / "dropped").rglob("*") if path.is_file())


def uid(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


CT = (TEST_FILES / "CT_small.dcm").read_bytes()
MR = (TEST_FILES / "MR_small.dcm").read_bytes()


def test_tab_shows_the_zone_and_the_open_after_checkbox(monkeypatch: pytest.MonkeyPatch) -> None:
    tab = Dialog(monkeypatch).tab
    assert tab.title == "Drop"
    assert tab.zone in tab.children and tab.open_after in tab.children
    assert tab.open_after.description == "Open after import" and "dicomnb-drop-open" in tab.open_after._dom_classes
    assert tab.zone.hint == ACCEPTED


def test_dropped_folder_lands_with_safe_names_and_is_imported(monkeypatch: pytest.MonkeyPatch,
                                                              isolated_cache: Path) -> None:
    dialog = Dialog(monkeypatch)
    files = [("My Study (1)/CT\x01small.dcm", CT), ("My Study (1)/série 2/MR_small", MR),
             ("My Study (1)/notes.txt", b"not DICOM\n")]
    dialog.drop([("My Study (1)", True)], files)

    assert dialog.alert.level == "success"
    assert dialog.alert.message == "Imported 2 instances in 2 series of 2 studies."
    [folder] = (isolated_cache / "dropped").iterdir()
    staged = folder / "My_Study__1"
    assert staged_files(isolated_cache) == sorted([staged / "CT_small.dcm", staged / "s_rie_2" / "MR_small",
                                                   staged / "notes.txt"])
    assert (staged / "CT_small.dcm").read_bytes() == CT and (staged / "s_rie_2" / "MR_small").read_bytes() == MR
    # the catalog reads the instances from the staging folder, which is kept
    assert {dicomnb.catalog.get(uid(CT)).path, dicomnb.catalog.get(uid(MR)).path} == {
        str(staged / "CT_small.dcm"), str(staged / "s_rie_2" / "MR_small")}
    # every file was answered, so the browser keeps sending
    progress = [a for a in dialog.answers if a["kind"] == "progress"]
    assert [(a["received"], a["count"]) for a in progress] == [(1, 3), (2, 3), (3, 3)]
    assert progress[-1]["bytes"] == len(CT) + len(MR) + len(b"not DICOM\n")
    assert dialog.tab.zone.status == ""


def large_dicom() -> bytes:
    """CT_small with a 2048 x 2048 frame: about 8 MiB, so three pieces of 4 MiB."""
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    ds.Rows = ds.Columns = 2048
    ds.PixelData = (np.arange(2048 * 2048, dtype=np.uint32) % 4093).astype(np.uint16).tobytes()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.4242"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_large_file_arrives_in_pieces_and_is_reassembled(monkeypatch: pytest.MonkeyPatch,
                                                          isolated_cache: Path) -> None:
    data = large_dicom()
    dialog = Dialog(monkeypatch, to_dialog=True)
    dialog.tab.open_after.value = True
    dialog.drop([("big.dcm", False)], [("big.dcm", data)])

    assert [a["bytes"] for a in dialog.answers] == [CHUNK_BYTES, 2 * CHUNK_BYTES, len(data)]
    [staged] = staged_files(isolated_cache)
    assert hashlib.sha256(staged.read_bytes()).digest() == hashlib.sha256(data).digest()
    [(report, open_after)] = dialog.reports
    assert open_after is True
    assert [r.SOPInstanceUID for r in report.instances] == ["1.2.826.0.1.3680043.8.498.4242"]
    assert dicomnb.catalog.load_series(report.instances[0].SeriesInstanceUID).shape == (1, 2048, 2048)


def test_dicomdir_folder_is_imported_as_media(monkeypatch: pytest.MonkeyPatch) -> None:
    dialog = Dialog(monkeypatch, to_dialog=True)
    dialog.drop([("CD", True)], folder_files(TEST_FILES / "dicomdirtests", "CD"))
    [(report, open_after)] = dialog.reports
    assert open_after is False
    assert report.tree is not None  # read through its DICOMDIR, not as loose files
    assert report.counts()["instances"] == 31 == len(dicomnb.catalog)


@pytest.mark.parametrize(
    ("items", "files", "reason"),
    [
        ([("study", True), ("CT_small.dcm", False)], [("study/MR_small", MR), ("CT_small.dcm", CT)],
         "Folders and files were dropped together (1 folders, 1 files)."),
        ([("one", True), ("two", True)], [("one/CT", CT), ("two/MR", MR)],
         "2 folders were dropped; drop them one at a time."),
        ([("my notes", True)], [("my notes/readme.txt", b"hello")],
         "my notes holds no DICOM file and no DICOMDIR."),
        ([("empty", True)], [], "empty holds no DICOM file and no DICOMDIR."),
    ],
    ids=["folder-and-file", "two-folders", "no-dicom", "empty-folder"],
)
def test_a_drop_the_rules_refuse_shows_their_message(monkeypatch: pytest.MonkeyPatch, isolated_cache: Path,
                                                     items: list[tuple[str, bool]], files: Files,
                                                     reason: str) -> None:
    dialog = Dialog(monkeypatch)
    dialog.drop(items, files)
    assert dialog.alert.level == "error"
    assert dialog.alert.message == f"{reason} {ACCEPTED}"  # named as dropped, not by the staging folder
    assert len(dicomnb.catalog) == 0
    assert nothing_staged(isolated_cache)  # a refused drop is not kept


@pytest.mark.parametrize(
    ("items", "reason"),
    [([("study", True), ("CT_small.dcm", False)], "Folders and files were dropped together"),
     ([("one", True), ("two", True)], "2 folders were dropped"), ([], "Nothing was dropped.")],
    ids=["folder-and-file", "two-folders", "nothing"],
)
def test_a_drop_of_the_wrong_shape_is_refused_before_its_files_are_sent(
        monkeypatch: pytest.MonkeyPatch, isolated_cache: Path, items: list[tuple[str, bool]], reason: str) -> None:
    dialog = Dialog(monkeypatch)
    dialog.deliver({"kind": "begin", "drop": "drop-1", "items": [{"name": n, "folder": f} for n, f in items],
                    "count": 2, "bytes": 2 * len(CT)})
    # the browser hears of it at once, so it stops before sending the first piece
    assert dialog.answers == [{"kind": "failed", "drop": "drop-1",
                               "message": f"The drop was refused: {dialog.alert.message}"}]
    assert dialog.alert.message.startswith(reason) and dialog.alert.message.endswith(ACCEPTED)
    assert nothing_staged(isolated_cache)


@pytest.mark.parametrize(
    ("path", "reason"),
    [("../evil.dcm", "climbs out of its folder"), ("study/../../evil.dcm", "climbs out of its folder"),
     ("{tmp}/evil.dcm", "is absolute"), ("C:/evil.dcm", "is absolute"), ("study/evil\x00.dcm", "NUL byte")],
    ids=["parent", "nested-parent", "absolute", "drive", "nul"],
)
def test_unsafe_paths_are_refused_and_nothing_is_written(monkeypatch: pytest.MonkeyPatch, isolated_cache: Path,
                                                         tmp_path: Path, path: str, reason: str) -> None:
    path = path.format(tmp=tmp_path)
    dialog = Dialog(monkeypatch)
    dialog.drop([("study", True)], [("study/CT_small.dcm", CT), (path, CT), ("study/MR_small", MR)])

    assert dialog.alert.level == "error"
    assert repr(path) in dialog.alert.message and reason in dialog.alert.message
    assert dialog.answers[-1] == {"kind": "failed", "drop": "drop-1",
                                  "message": f"The drop was refused: {dialog.alert.message}"}
    assert dialog.tab.zone.status == dialog.answers[-1]["message"]
    # the rest of the drop was ignored: nothing staged, nothing imported, nothing outside
    assert not any((isolated_cache / "dropped").iterdir())
    assert len(dicomnb.catalog) == 0
    assert not any(p.name.startswith("evil") for p in isolated_cache.parent.rglob("*"))
    assert not (tmp_path / "evil.dcm").exists()


def test_an_unsafe_dropped_name_is_refused(monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> None:
    dialog = Dialog(monkeypatch)
    dialog.drop([("..", True)], [("../CT", CT)])
    assert dialog.alert.level == "error" and "'..' climbs out of its folder" in dialog.alert.message
    assert not any((isolated_cache / "dropped").iterdir()) and len(dicomnb.catalog) == 0


FILE_CT = {"kind": "file", "path": "study/CT", "size": len(CT), "offset": 0, "index": 0, "count": 2}
FILE_MR = {"kind": "file", "path": "study/MR", "size": len(MR), "offset": 0, "index": 1, "count": 2}


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([(FILE_CT, CT), ({"kind": "end", "count": 2}, None)], "the drop ended with 1 of its 2 files missing"),
        ([(FILE_CT, CT[: len(CT) // 2]), (FILE_MR, MR)], "'study/CT' stopped after 19603 of its 39206 bytes"),
        ([({**FILE_CT, "offset": 100}, CT)], "a piece of 'study/CT' arrived out of order (at byte 100)"),
        ([(FILE_CT, CT + b"more")], "'study/CT' sent more bytes than its size"),
        ([({"kind": "abort", "message": "NotReadableError: the file was moved"}, None)],
         "the browser could not read the drop (NotReadableError: the file was moved)"),
    ],
    ids=["file-missing", "file-cut-short", "out-of-order", "too-long", "browser-abort"],
)
def test_an_interrupted_drop_is_removed(monkeypatch: pytest.MonkeyPatch, isolated_cache: Path,
                                        messages: list[tuple[dict[str, Any], bytes | None]], reason: str) -> None:
    dialog = Dialog(monkeypatch)
    dialog.deliver({"kind": "begin", "drop": "d", "items": [{"name": "study", "folder": True}],
                    "count": 2, "bytes": len(CT) + len(MR) + 4})
    for content, body in messages:
        dialog.deliver({**content, "drop": "d"}, [body] if body is not None else [])
    assert dialog.tab.wait(30)
    assert dialog.alert.level == "error" and reason in dialog.alert.message
    assert not any((isolated_cache / "dropped").iterdir())
    assert len(dicomnb.catalog) == 0


def test_the_javascript_walks_folders_and_sends_files_one_by_one() -> None:
    # a light check of the source; the browser test proves that it runs
    assert "webkitGetAsEntry()" in DROP_ZONE_ESM and "createReader()" in DROP_ZONE_ESM
    assert "readEntries" in DROP_ZONE_ESM and "webkitdirectory" in DROP_ZONE_ESM
    assert "export default { render }" in DROP_ZONE_ESM
    assert re.search(r'model\.send\(\{ kind: "file", drop, path, size: file\.size, offset, index, count \}, '
                     r"undefined, \[buffer\]\)", DROP_ZONE_ESM)
    chunk = int(re.search(r"const CHUNK = (\d+);", DROP_ZONE_ESM).group(1))
    assert chunk == CHUNK_BYTES < 10 * 1024 * 1024
    for css in ("dicomnb-drop-zone", "dicomnb-drop-choose-files", "dicomnb-drop-choose-folder",
                "dicomnb-drop-status"):
        assert f'"{css}"' in DROP_ZONE_ESM
    assert ".dicomnb-drop-zone" in DROP_ZONE_CSS


def test_each_drop_lands_in_a_folder_of_its_own(monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> None:
    dialog = Dialog(monkeypatch)
    dialog.drop([("CT_small.dcm", False), ("notes.txt", False)], [("CT_small.dcm", CT), ("notes.txt", b"hi")])
    assert dialog.alert.message == "Imported 1 instance in 1 series of 1 study."
    first = dialog.tab.zone.last
    dialog.drop([("CT_small.dcm", False)], [("CT_small.dcm", MR)], drop="drop-2")  # same name, other file
    assert dialog.alert.message == "Imported 1 instance in 1 series of 1 study."
    second = dialog.tab.zone.last

    assert first is not None and second is not None and first.folder != second.folder
    assert first.names == ("CT_small.dcm", "notes.txt") and first.count == 2
    assert first.paths[0].read_bytes() == CT and second.paths[0].read_bytes() == MR
    assert len(staged_files(isolated_cache)) == 3
    assert {dicomnb.catalog.dataset(u).SOPInstanceUID for u in (uid(CT), uid(MR))} == {uid(CT), uid(MR)}


class HeldImport:
    """The Drop tab's import, held at its first drop until ``release`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import dicomnb.widgets.droptab as droptab

        self.importing, self.release = threading.Event(), threading.Event()
        self.real = droptab.import_staged
        monkeypatch.setattr(droptab, "import_staged", self)

    def __call__(self, staged: Any, **watch: Any) -> ImportReport:
        if not self.importing.is_set():
            self.importing.set()
            assert self.release.wait(30)
        return self.real(staged, **watch)


def test_a_drop_that_lands_during_an_import_is_imported_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    dialog = Dialog(monkeypatch, to_dialog=True)
    held = HeldImport(monkeypatch)
    dialog.drop([("CT_small.dcm", False)], [("CT_small.dcm", CT)], wait=False)
    assert held.importing.wait(10)
    dialog.drop([("MR_small.dcm", False)], [("MR_small.dcm", MR)], drop="drop-2", wait=False)
    assert "imported after the drop before it" in dialog.tab.zone.status
    held.release.set()
    assert dialog.tab.wait(60)
    # each drop imported whole, in the order they landed, each with its report
    assert [[r.SOPInstanceUID for r in report.instances] for report, _ in dialog.reports] == [[uid(CT)], [uid(MR)]]
    assert not any(report.stopped for report, _ in dialog.reports)
    assert set(dicomnb.catalog.instances["SOPInstanceUID"]) == {uid(CT), uid(MR)}
    assert dialog.tab.zone.status == ""
    dialog.drop([("CT_small.dcm", False)], [("CT_small.dcm", CT)], drop="drop-3")  # and the next one as before
    assert len(dialog.reports) == 3


def test_stop_stops_the_import_and_removes_the_drops_waiting(monkeypatch: pytest.MonkeyPatch,
                                                              isolated_cache: Path) -> None:
    dialog = Dialog(monkeypatch, to_dialog=True)
    held = HeldImport(monkeypatch)
    dialog.drop([("CT_small.dcm", False)], [("CT_small.dcm", CT)], wait=False)
    assert held.importing.wait(10)
    dialog.drop([("MR_small.dcm", False)], [("MR_small.dcm", MR)], drop="drop-2", wait=False)
    waiting = dialog.tab.zone.last
    assert waiting is not None and waiting.folder.is_dir()
    dialog.tab.stop_button.click()
    held.release.set()
    assert dialog.tab.wait(60)
    [(report, _)] = dialog.reports
    assert report.stopped and uid(MR) not in set(dicomnb.catalog.instances["SOPInstanceUID"])
    assert not waiting.folder.exists()  # not imported, so not kept
    assert dialog.tab.zone.status == "Stopped: 1 drop not imported; drop again to import."
