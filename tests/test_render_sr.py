"""Structured reports as HTML: pydicom's bundled SR files and reports built here."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pydicom
import pytest
from conftest import TEST_FILES, require_module
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import dicomnb
from dicomnb.errors import InputError
from dicomnb.render.sr import MAX_DEPTH, SrView, is_structured_report

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def concept_meanings(ds: Dataset) -> list[str]:
    """Every concept name's Code Meaning in the content tree, read with pydicom alone."""
    found = []
    for item in ds.get("ContentSequence") or []:
        if item.get("ConceptNameCodeSequence"):
            found.append(str(item.ConceptNameCodeSequence[0].CodeMeaning))
        found += concept_meanings(item)
    return found


def code(value: str, meaning: str, scheme: str = "DCM") -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def content(relationship: str, value_type: str, meaning: str, **values: object) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = [code("99", meaning, "99TEST")]
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def image_reference(sop_class: str, sop_instance: str, relationship: str = "CONTAINS") -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = sop_class, sop_instance
    item = content(relationship, "IMAGE", "Key image")
    item.ReferencedSOPSequence = [ref]
    return item


def report(items: list[Dataset], title: str = "Findings") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = COMPREHENSIVE_SR
    ds.SOPClassUID = COMPREHENSIVE_SR
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P1"
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [code("18748-4", title, "LN")]
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag, ds.VerificationFlag = "PARTIAL", "UNVERIFIED"
    ds.ContentSequence = items
    return ds


# -- pydicom's files --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["test-SR.dcm", "reportsi.dcm", "reportsi_with_empty_number_tags.dcm"])
def test_every_concept_name_of_the_bundled_reports_is_shown(name: str) -> None:
    ds = pydicom.dcmread(TEST_FILES / name)
    page = SrView(TEST_FILES / name).html()
    meanings = concept_meanings(ds)
    assert meanings, "the file has a content tree"
    for meaning in meanings:
        assert html.escape(meaning) in page, meaning
    assert html.escape(str(ds.ConceptNameCodeSequence[0].CodeMeaning)) in page  # the document title
    assert f"<td>Completion</td><td>{ds.CompletionFlag}" in page
    assert f"<td>Verification</td><td>{ds.VerificationFlag}</td>" in page


def test_test_sr_values_units_and_structure() -> None:
    view = SrView(str(TEST_FILES / "test-SR.dcm"))
    page = view.html()
    assert view.kind == "sr" and view.title == "Diagnosis · Test, S R"
    # values with units, codes, dates and times, a UID with its name, coordinates as text
    assert "Diameter</span>: <span class='dicomnb-sr-text'>3 Length Unit</span>" in page
    assert "Sample Code 1" in page and "Sample Code 2" in page
    assert "2000-12-06" in page and "12:00:00" in page and "2000-12-06 12:00:00" in page
    assert "1.2.3.4.5" in page
    assert "CIRCLE (0, 0), (255, 255)" in page and "SEGMENT at 1, 2.5 s" in page
    # the verifying observers, the completion flag's description
    assert "Riesmeier, Jörg (OFFIS e.V., 2001-02-13 18:47:46)" in page
    assert "COMPLETE: This document is completed!" in page
    # relationship types are shown
    for relationship in ("has obs context", "contains", "has concept mod", "inferred from", "has properties",
                         "has acq context", "selected from"):
        assert f"<span class='dicomnb-sr-rel'>{relationship}</span>" in page
    # nested items are collapsible; every item with children is one <details>
    with_children = sum(1 for item in view.document.walk() if item.children) - 1  # the root is the page
    assert page.count("<details open>") == with_children == 11
    # HTML in a text value is escaped, never markup
    assert '&amp;%$§&quot;!()&lt;&gt;{}/;' in page and "()<>{}" not in page
    # references: an image with its frames and presentation state, a waveform's channels
    refs = {ref.sop_instance_uid: ref for ref in view.references}
    assert refs["1.2.3.4.5.0"].frames == (5, 2) and refs["1.2.3.4.5.0"].sop_class_name == "CT Image Storage"
    assert "Grayscale Softcopy Presentation State Storage 1.2.3.5.6.7" in refs["1.2.3.4.5.0"].extra
    assert refs["1.2.3.4.5"].extra == "channels 5:3, 2:0"
    assert not any(ref.in_catalog for ref in view.references)
    assert page.count("not in catalog</span>") == len(view.references) == 4


def test_by_reference_items_link_to_their_target() -> None:
    view = SrView(TEST_FILES / "test-SR.dcm")
    page = view.html()
    links = re.findall(r"<a href='#(sr[0-9a-f]{6}-[0-9-]+)'>see item ([0-9.]+) \(([^)]*)\)</a>", page)
    assert [(number, concept) for _, number, concept in links] == [("1.3.2", "SCoord Code"), ("1.2.2.1", "Code")]
    for anchor, _, _ in links:
        assert page.count(f"id='{anchor}'") == 1


def test_plain_text_outline() -> None:
    lines = SrView(TEST_FILES / "test-SR.dcm").text().splitlines()
    assert lines[0] == "Diagnosis:"
    assert "    [CONTAINS] Diameter: 3 Length Unit" in lines
    assert "      [SELECTED FROM] -> 1.3.2" in lines


# -- reports built here -----------------------------------------------------------------------------
def test_references_are_marked_by_whether_the_catalog_holds_them(tmp_path: Path) -> None:
    dicomnb.import_local(TEST_FILES / "CT_small.dcm")
    ct = pydicom.dcmread(TEST_FILES / "CT_small.dcm", stop_before_pixels=True)
    path = tmp_path / "sr.dcm"
    report([image_reference(str(ct.SOPClassUID), str(ct.SOPInstanceUID)),
            image_reference(str(ct.SOPClassUID), "1.2.3.999")]).save_as(path, enforce_file_format=True)
    dicomnb.import_local(path)
    record = next(r for r in dicomnb.catalog.records() if r.Modality == "SR")

    view = SrView(record)  # a catalog record, as dicomnb.show passes it
    assert [(ref.sop_instance_uid, ref.in_catalog) for ref in view.references] == [
        (str(ct.SOPInstanceUID), True), ("1.2.3.999", False)]
    page = view.html()
    marked = re.findall(r"<span class='dicomnb-sr-ref'>([0-9.]+)</span> \(<span class='dicomnb-sr-(in|out)'", page)
    assert marked == [(str(ct.SOPInstanceUID), "in"), ("1.2.3.999", "out")]
    assert "2 referenced object(s), 1 not in the catalog" in page


def test_value_types_of_a_built_report() -> None:
    size = content("CONTAINS", "NUM", "Long axis")
    measured = Dataset()
    measured.NumericValue = "12.5"
    measured.MeasurementUnitsCodeSequence = [code("mm", "millimeter", "UCUM")]
    size.MeasuredValueSequence = [measured]
    missing = content("CONTAINS", "NUM", "Short axis", MeasuredValueSequence=[])
    missing.NumericValueQualifierCodeSequence = [code("114006", "Measurement failure")]
    ratio = content("CONTAINS", "NUM", "Ratio")
    unitless = Dataset()
    unitless.NumericValue = "0.4"
    unitless.MeasurementUnitsCodeSequence = [code("1", "no units", "UCUM")]
    ratio.MeasuredValueSequence = [unitless]
    finding = content("CONTAINS", "CODE", "Finding", ConceptCodeSequence=[code("4147007", "Mass", "SCT")])
    observer = content("HAS OBS CONTEXT", "PNAME", "Person observer", PersonName="Smith^John^Q^Dr")
    point = content("CONTAINS", "SCOORD3D", "Centre", GraphicType="POINT", GraphicData=[1.5, -2.0, 30.0],
                    ReferencedFrameOfReferenceUID="1.2.3.4")
    note = content("CONTAINS", "TEXT", "Comment", TextValue="<script>alert('x')</script>\r\nline two")
    uid = content("HAS OBS CONTEXT", "UIDREF", "Study UID", UID="1.2.840.10008.1.2")
    section = content("CONTAINS", "CONTAINER", "Lesion 1", ContinuityOfContent="SEPARATE")
    section.ContentSequence = [size, missing, ratio, finding, point]
    view = SrView(report([observer, uid, section, note]))
    page = view.html()

    assert "Long axis</span>: <span class='dicomnb-sr-text'>12.5 mm</span>" in page
    assert "Short axis</span>: <span class='dicomnb-sr-text'>Measurement failure</span>" in page
    assert "Ratio</span>: <span class='dicomnb-sr-text'>0.4</span>" in page
    assert "Finding</span>: <span class='dicomnb-sr-text'>Mass</span>" in page
    assert "Smith, Dr John Q" in page
    assert "POINT (1.5, -2, 30) in frame of reference 1.2.3.4" in page
    assert "1.2.840.10008.1.2 (Implicit VR Little Endian)" in page
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;\nline two" in page
    assert "<summary><span class='dicomnb-sr-rel'>contains</span> <span class='dicomnb-sr-container'" in page
    assert view.title == "Findings · Doe, Jane"
    assert ("Completion", "PARTIAL") in view.header() and ("Patient", "Doe, Jane (P1)") in view.header()


def test_a_tree_deeper_than_the_limit_is_cut_not_a_crash() -> None:
    leaf = content("CONTAINS", "TEXT", "Bottom", TextValue="deep")
    for _ in range(MAX_DEPTH + 10):
        parent = content("CONTAINS", "CONTAINER", "Level")
        parent.ContentSequence = [leaf]
        leaf = parent
    page = SrView(report([leaf])).html()
    assert f"1 items deeper than {MAX_DEPTH} levels, not shown" in page
    assert "Bottom" not in page


def test_not_a_report() -> None:
    with pytest.raises(InputError, match="not a structured report"):
        SrView(TEST_FILES / "CT_small.dcm")


@pytest.mark.parametrize(("name", "expected"), [("test-SR.dcm", True), ("reportsi.dcm", True),
                                                ("CT_small.dcm", False), ("waveform_ecg.dcm", False)])
def test_which_sop_classes_are_reports(name: str, expected: bool) -> None:
    ds = pydicom.dcmread(TEST_FILES / name, stop_before_pixels=True)
    assert is_structured_report(ds.SOPClassUID) is expected
    assert is_structured_report(None) is False


def test_displayed_as_html_and_as_a_widget() -> None:
    view = SrView(TEST_FILES / "test-SR.dcm")
    bundle = view._repr_mimebundle_()
    assert bundle["text/html"] == view.html() and bundle["text/plain"] == "<dicomnb sr view: Diagnosis · Test, S R>"
    require_module("ipywidgets", "notebook")
    widget = view.widget()
    assert widget.value == view.html() and view.widget() is widget
