"""Importing local files and folders into the catalog."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import CHARSET_FILES, TEST_FILES, tree_hashes

import dicomnb
from dicomnb.core.errors import InputError
from dicomnb.core.model import InstanceRecord
from dicomnb.sources.local import LocalSource

CT_UID = str(pydicom.dcmread(TEST_FILES / "CT_small.dcm", stop_before_pixels=True).SOPInstanceUID)


def test_folder_import_recognises_dicom_by_content(sample_tree: Path) -> None:
    report = dicomnb.import_local(sample_tree)
    df = dicomnb.catalog.instances
    assert len(df) == 4
    names = {Path(p).name for p in df["path"]}
    assert names == {"CT_small.dcm", "MRSMALL", "plan.IMA", "raw.bin"}
    assert set(df["source"]) == {"local"}
    assert report.skipped == 1  # notes.txt
    assert list(dicomnb.catalog.images["format"]) == ["png"]
    assert dicomnb.catalog.errors.empty
    assert report.counts()["instances"] == 4


def test_instances_table_has_the_catalog_columns(sample_tree: Path) -> None:
    dicomnb.import_local(sample_tree)
    df = dicomnb.catalog.instances
    for column in ["PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                   "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber",
                   "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality",
                   "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns",
                   "NumberOfFrames", "TransferSyntaxUID", "path", "source", "origin"]:
        assert column in df.columns
    ct = df[df["SOPInstanceUID"] == CT_UID].iloc[0]
    assert ct["Modality"] == "CT" and ct["Rows"] == 128 and ct["PatientName"] == "CompressedSamples^CT1"
    assert os.path.isabs(ct["path"]) and ct["origin"] == str(sample_tree)


def test_not_recursive(sample_tree: Path) -> None:
    dicomnb.import_local(sample_tree, recursive=False)
    assert list(dicomnb.catalog.instances["SOPInstanceUID"]) == [CT_UID]


def test_same_instance_twice_is_one_row(sample_tree: Path, tmp_path: Path) -> None:
    copy = tmp_path / "again"
    shutil.copytree(sample_tree, copy)
    first = dicomnb.import_local(sample_tree)
    second = dicomnb.import_local([sample_tree, copy])
    assert len(dicomnb.catalog.instances) == 4
    assert first.added == 4 and second.added == 0 and second.duplicates == 8


def test_sources_are_never_modified(sample_tree: Path) -> None:
    before = tree_hashes(sample_tree)
    dicomnb.import_local(sample_tree)
    dicomnb.load_series(dicomnb.catalog.series["SeriesInstanceUID"].iloc[0])
    assert tree_hashes(sample_tree) == before


def test_bad_files_are_reported_and_the_import_goes_on(sample_tree: Path) -> None:
    shutil.copy(TEST_FILES / "rtplan_truncated.dcm", sample_tree / "cut")
    data = (TEST_FILES / "CT_small.dcm").read_bytes()
    (sample_tree / "cut-pixels.dcm").write_bytes(data[:20000])
    (sample_tree / "no-sop.dcm").write_bytes((TEST_FILES / "priv_SQ.dcm").read_bytes())
    report = dicomnb.import_local(sample_tree)
    assert len(dicomnb.catalog.instances) == 4
    errors = dicomnb.catalog.errors.set_index("path")
    assert errors.loc[str(sample_tree / "cut"), "error"] == "TruncatedFileError"
    assert errors.loc[str(sample_tree / "cut-pixels.dcm"), "error"] == "TruncatedFileError"
    assert errors.loc[str(sample_tree / "no-sop.dcm"), "error"] == "UnreadableFileError"
    assert "cut short" in errors.loc[str(sample_tree / "cut"), "message"]
    assert len(report.errors) == 3


def test_unreadable_file_is_an_error_not_a_crash(sample_tree: Path) -> None:
    if os.geteuid() == 0:
        # root reads any file: make one unreadable by turning it into a dangling link
        os.symlink(sample_tree / "gone", sample_tree / "dangling")
        dicomnb.import_local(sample_tree)
        assert len(dicomnb.catalog.instances) == 4
    else:  # pragma: no cover - CI runs as root
        locked = sample_tree / "locked.dcm"
        shutil.copy(TEST_FILES / "MR_small.dcm", locked)
        locked.chmod(0)
        dicomnb.import_local(sample_tree)
        assert "UnreadableFileError" in set(dicomnb.catalog.errors["error"])


def test_missing_path_is_a_typed_error(tmp_path: Path) -> None:
    report = dicomnb.import_local(tmp_path / "nope")
    assert report.errors[0].error == "InputError"
    with pytest.raises(InputError):
        dicomnb.get(local=[tmp_path / "nope"])


def test_worker_processes_give_the_same_catalog(sample_tree: Path, tmp_path: Path) -> None:
    tree = tmp_path / "many"
    for i in range(30):
        shutil.copytree(sample_tree, tree / f"copy{i}")
    with dicomnb.settings.override(workers=1):
        serial = sorted(LocalSource(tree).items(), key=repr)
    with dicomnb.settings.override(workers=2, parallel_threshold=10):
        parallel = sorted(LocalSource(tree).items(), key=repr)
    assert parallel == serial
    assert sum(isinstance(i, InstanceRecord) for i in parallel) == 120


def test_records_come_back_from_a_worker_unchanged(sample_tree: Path) -> None:
    # Worker processes send records back pickled: every kind must come back equal.
    (sample_tree / "cut").write_bytes((TEST_FILES / "CT_small.dcm").read_bytes()[:300])
    items = list(LocalSource(sample_tree).items())
    assert {type(i).__name__ for i in items} == {"InstanceRecord", "ImageRecord", "SkippedRecord",
                                                 "ErrorRecord"}
    for item in items:
        again = pickle.loads(pickle.dumps(item))
        assert again == item and type(again) is type(item)


def test_missing_paths_come_first_and_the_rest_is_imported(sample_tree: Path, tmp_path: Path) -> None:
    source = LocalSource([sample_tree, tmp_path / "nope", sample_tree / "CT_small.dcm"])
    items = list(source.items())
    assert items[0].error == "InputError"  # type: ignore[union-attr]
    assert sum(isinstance(i, InstanceRecord) for i in items) == 5  # 4 in the folder, and the file again


def test_character_sets_in_the_catalog() -> None:
    dicomnb.import_local(CHARSET_FILES)
    names = set(dicomnb.catalog.instances["PatientName"])
    assert {"김희중", "Люкceмбypг", "Yamada^Tarou=山田^太郎=やまだ^たろう"} <= names


def test_tables_group_the_instances(sample_tree: Path, tmp_path: Path) -> None:
    dicomnb.import_local(TEST_FILES / "dicomdirtests" / "77654033")  # one patient, 2 studies
    patients = dicomnb.catalog.patients
    assert list(patients["PatientID"]) == ["77654033"]
    assert patients["NumberOfPatientRelatedStudies"].iloc[0] == 2
    assert patients["NumberOfPatientRelatedInstances"].iloc[0] == 7
    studies = dicomnb.catalog.studies
    assert sorted(studies["ModalitiesInStudy"]) == ["CR", "CT"]
    assert studies["NumberOfStudyRelatedInstances"].sum() == 7
    series = dicomnb.catalog.series
    assert series["NumberOfSeriesRelatedInstances"].sum() == 7
    assert len(series) == 4


def _write_slices(folder: Path, positions: list[float]) -> str:
    template = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    series_uid = pydicom.uid.generate_uid()
    folder.mkdir()
    for number, z in enumerate(positions, start=1):
        ds = template.copy()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = len(positions) - number + 1  # deliberately not the spatial order
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, z]
        pixels = ds.pixel_array.copy()
        pixels[0, 0] = int(z)  # a marker to find the slice in the volume
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"slice{number}")
    return series_uid


def test_series_as_a_volume_sorted_by_position(tmp_path: Path) -> None:
    uid = _write_slices(tmp_path / "series", [30.0, 10.0, 50.0, 20.0, 40.0])
    dicomnb.import_local(tmp_path / "series")
    raw = dicomnb.load_series(uid, modality_lut=False)
    assert raw.shape == (5, 128, 128)
    assert list(raw[:, 0, 0]) == [10, 20, 30, 40, 50]
    ds = pydicom.dcmread(tmp_path / "series" / "slice1")
    hounsfield = dicomnb.load_series(uid)
    expected = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_allclose(hounsfield[2], expected)


def test_multiframe_instance_gives_its_frames() -> None:
    dicomnb.import_local(TEST_FILES / "SC_rgb_rle_2frame.dcm")
    uid = dicomnb.catalog.series["SeriesInstanceUID"].iloc[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pydicom.dcmread(TEST_FILES / "SC_rgb_rle_2frame.dcm").pixel_array
    np.testing.assert_array_equal(dicomnb.load_series(uid), expected)


def test_unknown_series_is_a_typed_error() -> None:
    with pytest.raises(InputError, match="import it first"):
        dicomnb.load_series("1.2.3")


def test_a_series_of_one_image_is_still_a_volume() -> None:
    dicomnb.import_local(TEST_FILES / "CT_small.dcm")
    volume = dicomnb.load_series(dicomnb.catalog.series["SeriesInstanceUID"].iloc[0])
    assert volume.shape == (1, 128, 128)


def test_a_dataset_without_preamble_loads_too(sample_tree: Path) -> None:
    dicomnb.import_local(sample_tree / "sub" / "raw.bin")  # no preamble, no meta information
    uid = dicomnb.catalog.instances["SOPInstanceUID"].iloc[0]
    assert dicomnb.catalog.dataset(uid).SOPInstanceUID == uid


def test_a_pool_that_cannot_start_loses_nothing(tmp_path: Path, sample_tree: Path) -> None:
    tree = tmp_path / "many"
    for i in range(5):
        shutil.copytree(sample_tree, tree / f"copy{i}")
    # Worker processes re-run the main module by its path: one that is gone kills them at start.
    code = (f"import sys, dicomnb; sys.modules['__main__'].__file__ = {str(tmp_path / 'gone.py')!r}; "
            "dicomnb.settings.parallel_threshold = 2; "
            f"report = dicomnb.import_local({str(tree)!r}); print(report.added, report.duplicates)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "FileNotFoundError" in result.stderr  # the workers did die
    assert result.stdout.split() == ["4", "16"]  # and every file was still read


def test_progress_reports_the_import_as_it_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dicomnb.core.catalog.PROGRESS_INTERVAL", 0.0)
    seen: list[int] = []
    report = dicomnb.import_local(TEST_FILES, progress=lambda r: seen.append(len(r.instances)))
    assert len(seen) > 10 and seen == sorted(seen)  # called as files are read, never going back
    assert seen[-1] == len(report.instances) > 50 and not report.stopped


def test_a_cancelled_import_keeps_what_it_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setattr("dicomnb.core.catalog.PROGRESS_INTERVAL", 0.0)
    cancel = threading.Event()

    def progress(report: dicomnb.ImportReport) -> None:
        if len(report.instances) >= 5:
            cancel.set()

    report = dicomnb.import_local([TEST_FILES, TEST_FILES / "dicomdirtests"], progress=progress, cancel=cancel)
    assert report.stopped and 5 <= len(report.instances) <= 7
    assert len(dicomnb.catalog.instances) == len(report.instances)
    assert "stopped before the end" in report.summary() and report.to_json()["stopped"] is True
    again = dicomnb.import_local(TEST_FILES)  # a new import reads everything, the first ones as duplicates
    assert not again.stopped and again.duplicates >= 5 and len(again.instances) > 50
