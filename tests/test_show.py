"""``dicomnb.show(x)``: the viewer chosen by the kind of object, whatever names it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from conftest import TEST_FILES
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import dicomnb
from dicomnb.core.errors import InputError
from dicomnb.render.show import VIEWS, viewer_kind


def kinds(x: object, **options: str) -> str:
    view = dicomnb.show(x, **options)
    assert view.html()  # every view renders statically, with no kernel
    return view.kind


@pytest.mark.parametrize(
    ("name", "kind"),
    [("test-SR.dcm", "sr"), ("waveform_ecg.dcm", "waveform"), ("CT_small.dcm", "image"),
     ("examples_ybr_color.dcm", "stack"), ("rtplan.dcm", "header"), ("rtdose.dcm", "stack")],
)
def test_a_file_opens_in_the_viewer_its_kind_calls_for(name: str, kind: str) -> None:
    assert kinds(TEST_FILES / name) == kind
    assert kinds(str(TEST_FILES / name)) == kind  # a path given as text too


def pdf_instance(path: Path) -> Path:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality, ds.MIMETypeOfEncapsulatedDocument = "PDF1", "DOC", "application/pdf"
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"
    ds.EncapsulatedDocument = pdf + b"\0"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_catalog_rows_records_and_uids_all_reach_their_view(tmp_path: Path) -> None:
    for name in ("CT_small.dcm", "test-SR.dcm", "waveform_ecg.dcm", "rtplan.dcm"):
        shutil.copy(TEST_FILES / name, tmp_path / name)
    pdf_instance(tmp_path / "report.dcm")
    dicomnb.import_local(tmp_path)
    instances = dicomnb.catalog.instances.set_index("Modality")
    ct = instances.loc["CT"]
    assert kinds(ct["SOPInstanceUID"]) == "image"        # an instance's UID
    assert kinds(ct["SeriesInstanceUID"]) == "image"     # a series of one image
    assert kinds(dicomnb.catalog.get(ct["SOPInstanceUID"])) == "image"  # its record
    series = dicomnb.catalog.series.set_index("Modality")
    assert kinds(dicomnb.catalog.series[dicomnb.catalog.series["Modality"] == "SR"].iloc[0]) == "sr"
    assert kinds(series.loc["ECG"]["SeriesInstanceUID"]) == "waveform"
    assert kinds(series.loc["DOC"]["SeriesInstanceUID"]) == "pdf"
    assert kinds(series.loc["RTPLAN"]["SeriesInstanceUID"]) == "header"
    study = dicomnb.catalog.studies[dicomnb.catalog.studies["StudyInstanceUID"] == ct["StudyInstanceUID"]]
    view = dicomnb.show(study)  # a one-row table is its row
    assert view.kind == "study" and view.series == [ct["SeriesInstanceUID"]]
    assert '<img src="data:image/png;base64,' in view.html()


def test_a_series_of_several_images_is_a_stack_and_mpr_on_request(tmp_path: Path) -> None:
    for i in range(4):
        ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [0.0, 0.0, float(3 - i) * 2.5]
        ds.InstanceNumber = i + 1
        ds.save_as(tmp_path / f"slice{i}.dcm")
    dicomnb.import_local(tmp_path)
    uid = dicomnb.catalog.series["SeriesInstanceUID"].iloc[0]
    view = dicomnb.show(uid)
    assert view.kind == "stack" and "4 instances" in view.title
    assert kinds(uid, view="mpr") == "mpr"
    assert kinds(uid, view="image") == "image"


def test_plain_files_images_and_attachments(tmp_path: Path, sample_tree: Path) -> None:
    assert kinds(sample_tree / "photo.png") == "picture"
    assert kinds(sample_tree / "notes.txt") == "attachments"
    dicomnb.import_local(sample_tree)
    assert kinds(dicomnb.catalog.images.iloc[0]) == "picture"  # a row of the images table


def test_what_cannot_be_shown_says_what_would_be(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder: import it first"):
        dicomnb.show(tmp_path)
    with pytest.raises(InputError, match="no such file, and no instance, series or study"):
        dicomnb.show("1.2.3.4.5")
    with pytest.raises(InputError, match="unknown view 'volume': choose one of image, stack, mpr"):
        dicomnb.show(TEST_FILES / "CT_small.dcm", view="volume")
    with pytest.raises(InputError, match="cannot show a int"):
        dicomnb.show(42)
    dicomnb.import_local(TEST_FILES / "CT_small.dcm")
    dicomnb.import_local(TEST_FILES / "MR_small.dcm")
    with pytest.raises(InputError, match="a table of 2 rows: show one row"):
        dicomnb.show(dicomnb.catalog.series)


def test_viewer_kind_follows_the_sop_class() -> None:
    assert viewer_kind("1.2.840.10008.5.1.4.1.1.88.22") == "sr"
    assert viewer_kind("1.2.840.10008.5.1.4.1.1.9.4.1") == "audio"
    assert viewer_kind("1.2.840.10008.5.1.4.1.1.9.1.1", "ECG") == "waveform"
    assert viewer_kind("1.2.840.10008.5.1.4.1.1.9.1.1", "AU") == "audio"
    assert viewer_kind("1.2.840.10008.5.1.4.1.1.2", instances=40) == "stack"
    assert viewer_kind("1.2.840.10008.5.1.4.1.1.2", frames=12) == "stack"
    assert viewer_kind("1.2.840.10008.5.1.4.1.1.481.5", rows=None) == "header"
    assert set(VIEWS) >= {"image", "stack", "mpr", "sr", "waveform", "audio", "pdf", "picture", "attachments"}


def test_a_view_gives_static_html_beside_its_widget() -> None:
    view = dicomnb.show(TEST_FILES / "CT_small.dcm")
    bundle = view._repr_mimebundle_()
    # no kernel here: the static rendering only (a live kernel adds the widget's view)
    assert set(bundle) == {"text/plain", "text/html"} and bundle["text/plain"].startswith("<dicomnb image view")
    assert view.widget() is view.widget()  # built once: the same controls on every display


def test_a_retrieved_file_shown_by_its_path_shows_its_manifests_values(tmp_path: Path) -> None:
    """A file the catalog holds with a manifest's overrideDicomTagsList values shows those values,
    by its path as through the catalog; the file keeps its own, and another copy shows its own."""
    from dicomnb.core.classify import classify_file
    from dicomnb.core.overrides import overridden

    stored, other = tmp_path / "stored.dcm", tmp_path / "other.dcm"
    shutil.copy(TEST_FILES / "CT_small.dcm", stored)
    shutil.copy(TEST_FILES / "CT_small.dcm", other)
    record = classify_file(str(stored))
    dicomnb.catalog.add_items([overridden(record, (("PatientName", "Doe^Jane"),))])
    try:
        view = dicomnb.show(str(stored), view="header")
        assert "Doe^Jane" in view.title and "Doe^Jane" in view.html()
        assert "Doe^Jane" not in dicomnb.show(str(other), view="header").html()  # not the catalog's file
        assert pydicom.dcmread(stored).PatientName == "CompressedSamples^CT1"
    finally:
        dicomnb.catalog.clear()
