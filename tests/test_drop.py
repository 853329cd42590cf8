"""The drop rules: three accepted cases, a message naming them for anything else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import TEST_FILES

import dicomnb
from dicomnb.core.drop import DropKind
from dicomnb.errors import DropRejected


def test_folder_with_dicomdir(tmp_path: Path) -> None:
    media = tmp_path / "cd"
    shutil.copytree(TEST_FILES / "dicomdirtests", media)
    assert dicomnb.check_drop([media]).kind is DropKind.DICOMDIR_FOLDER


def test_dicom_folder(sample_tree: Path) -> None:
    plan = dicomnb.check_drop([sample_tree / "sub"])
    assert plan.kind is DropKind.DICOM_FOLDER and plan.paths == (str(sample_tree / "sub"),)


def test_selected_files(sample_tree: Path) -> None:
    files = [sample_tree / "CT_small.dcm", sample_tree / "notes.txt"]
    assert dicomnb.check_drop(files).kind is DropKind.FILES
    report = dicomnb.import_drop(files)
    assert report.counts()["instances"] == 1 and report.skipped == 1


@pytest.mark.parametrize(
    ("case", "reason"),
    [("nothing", "Nothing was dropped"), ("two-folders", "2 folders"), ("mixed", "Folders and files"),
     ("no-dicom", "holds no DICOM"), ("missing", "does not exist")],
)
def test_anything_else_names_the_three_cases(sample_tree: Path, tmp_path: Path, case: str, reason: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("hello")
    paths = {
        "nothing": [],
        "two-folders": [sample_tree, sample_tree / "sub"],
        "mixed": [sample_tree / "sub", sample_tree / "CT_small.dcm"],
        "no-dicom": [empty],
        "missing": [tmp_path / "gone"],
    }[case]
    with pytest.raises(DropRejected) as info:
        dicomnb.check_drop(paths)
    message = str(info.value)
    assert reason in message
    assert "DICOMDIR" in message and "DICOM folder" in message and "selected files" in message
