"""Encapsulated PDF, plain pictures and the attachments of media, as the page shows them."""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_FILES, require_module
from PIL import Image  # the test extra installs Pillow
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import dicomnb
from dicomnb.errors import InputError
from dicomnb.render import documents
from dicomnb.render.documents import PDF_SOP_CLASS, AttachmentsView, PdfView, PictureView


def tiny_pdf(text: str = "Hello") -> bytes:
    """A valid one-page PDF (with its cross-reference table), odd or even in length as it comes."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def encapsulated(path: Path, document: bytes, *, mime: str = "application/pdf", length: bool = True,
                 title: str = "Discharge letter") -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = PDF_SOP_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "DOC"
    ds.PatientName = "Doe^Jane"
    ds.DocumentTitle = title
    ds.MIMETypeOfEncapsulatedDocument = mime
    ds.EncapsulatedDocument = document + b"\x00" * (len(document) % 2)  # the pad byte of an odd length
    if length:
        ds.EncapsulatedDocumentLength = len(document)
    ds.save_as(path, enforce_file_format=True)
    return path


def data_uris(page: str, mime: str) -> list[bytes]:
    return [base64.b64decode(d) for d in re.findall(rf'"data:{re.escape(mime)};base64,([^"]+)"', page)]


# -- PDF --------------------------------------------------------------------------------------------
def test_encapsulated_pdf_without_its_pad_byte(tmp_path: Path) -> None:
    pdf = tiny_pdf("Hello")
    if len(pdf) % 2 == 0:
        pdf = tiny_pdf("Hello!")
    assert len(pdf) % 2 == 1  # so the file holds a pad byte
    view = PdfView(encapsulated(tmp_path / "doc.dcm", pdf))
    assert view.kind == "pdf" and view.data == pdf
    assert view.title == "Discharge letter · Doe, Jane" and view.name == "Discharge letter.pdf"
    page = view.html()
    assert data_uris(page, "application/pdf") == [pdf, pdf]  # the download link and the viewer
    assert '<a download="Discharge letter.pdf" href="data:application/pdf;base64,' in page
    assert '<iframe src="data:application/pdf;base64,' in page
    view.save(tmp_path / "out.pdf")
    assert (tmp_path / "out.pdf").read_bytes() == pdf


def test_pdf_without_a_length_and_from_the_catalog(tmp_path: Path) -> None:
    pdf = tiny_pdf("Hello")
    if len(pdf) % 2 == 0:
        pdf = tiny_pdf("Hello!")
    encapsulated(tmp_path / "doc.dcm", pdf, length=False, title="a/b:c")
    dicomnb.import_local(tmp_path)
    (record,) = dicomnb.catalog.records()
    view = PdfView(record)
    assert view.data == pdf  # the pad byte after %%EOF is dropped
    assert view.name == "a_b_c.pdf"  # a title is no path


def test_a_plain_pdf_file(tmp_path: Path) -> None:
    path = tmp_path / "letter.pdf"
    path.write_bytes(tiny_pdf())
    view = PdfView(path)
    assert view.data == tiny_pdf() and view.title == "letter.pdf"
    assert data_uris(view.html(), "application/pdf") == [tiny_pdf()] * 2


def test_what_is_not_a_pdf(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no encapsulated document"):
        PdfView(TEST_FILES / "CT_small.dcm")
    cda = encapsulated(tmp_path / "cda.dcm", b"<ClinicalDocument/>", mime="text/XML")
    with pytest.raises(InputError, match="the encapsulated document is text/xml, not a PDF"):
        PdfView(cda)
    liar = encapsulated(tmp_path / "liar.dcm", b"not a pdf at all")
    with pytest.raises(InputError, match="does not start like a PDF"):
        PdfView(liar)


def test_a_pdf_too_large_to_embed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "EMBED_LIMIT", 100)
    view = PdfView(encapsulated(tmp_path / "doc.dcm", tiny_pdf()))
    page = view.html()
    assert "data:" not in page and "is more than the 100 bytes embedded in a notebook" in page
    assert "<code>view.save('Discharge letter.pdf')</code>" in page


# -- pictures ---------------------------------------------------------------------------------------
def picture(path: Path, fmt: str, array: np.ndarray) -> np.ndarray:
    Image.fromarray(array).save(path, format=fmt)
    return array


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


@pytest.fixture
def rgb() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif")])
def test_what_browsers_show_is_embedded_as_it_is(tmp_path: Path, rgb: np.ndarray, fmt: str, mime: str) -> None:
    path = tmp_path / f"photo.{fmt.lower()}"
    picture(path, fmt, rgb)
    view = PictureView(path)
    assert view.kind == "picture" and (view.width, view.height) == (20, 12)
    assert data_uris(view.html(), mime) == [path.read_bytes()]
    assert f"({fmt}, 20×12," in view.html()


@pytest.mark.parametrize("fmt", ["TIFF", "BMP"])
def test_tiff_and_bmp_become_png(tmp_path: Path, rgb: np.ndarray, fmt: str) -> None:
    path = tmp_path / f"scan.{fmt.lower()}"
    picture(path, fmt, rgb)
    view = PictureView(path)
    (png,) = data_uris(view.html(), "image/png")
    np.testing.assert_array_equal(decoded(png), rgb)


def test_a_16_bit_tiff_is_stretched_and_a_multipage_tiff_shows_page_one(tmp_path: Path) -> None:
    values = np.array([[100, 200], [300, 1100]], dtype=np.uint16)
    picture(tmp_path / "depth.tif", "TIFF", values)
    with Image.open(tmp_path / "depth.tif") as written:
        assert written.mode == "I;16"
    (png,) = data_uris(PictureView(tmp_path / "depth.tif").html(), "image/png")
    np.testing.assert_array_equal(decoded(png), [[0, 25], [51, 255]])  # min → 0, max → 255

    pages = [Image.new("L", (4, 4), shade) for shade in (10, 20, 30)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    view = PictureView(tmp_path / "pages.tif")
    assert view.pages == 3 and "page 1 of 3" in view.html()
    (png,) = data_uris(view.html(), "image/png")
    assert decoded(png).max() == 10


def test_pictures_from_the_catalog_a_folder_and_a_zip(tmp_path: Path, rgb: np.ndarray) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    picture(folder / "photo.png", "PNG", rgb)
    dicomnb.import_local(folder)
    (record,) = dicomnb.catalog.images.itertuples(index=False)
    assert PictureView(folder / "photo.png").data == (folder / "photo.png").read_bytes()
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(folder / "photo.png", "inside/photo.png")
    dicomnb.catalog.clear()
    dicomnb.import_zip(archive)  # the entry stays in its archive
    (record,) = dicomnb.catalog.images.itertuples(index=False)
    assert record.path == str(archive) and record.member == "inside/photo.png"
    view = PictureView(record)
    assert view.data == (folder / "photo.png").read_bytes() and view.title == "photo.png"


def test_what_is_not_a_picture(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a picture"):
        PictureView(TEST_FILES / "CT_small.dcm")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(InputError, match="cannot be decoded as PNG"):
        PictureView(broken)


def test_a_large_picture_is_embedded_as_a_preview(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (600, 500, 3), dtype=np.uint8)
    picture(tmp_path / "big.png", "PNG", noise)
    assert (tmp_path / "big.png").stat().st_size > 500_000
    monkeypatch.setattr(documents, "EMBED_LIMIT", 500_000)
    monkeypatch.setattr(documents, "PREVIEW_SIZE", 256)
    view = PictureView(tmp_path / "big.png")
    assert view.preview and view.mime == "image/jpeg" and "(a preview: the file is more than" in view.html()
    assert (view.width, view.height) == (500, 600)
    (jpeg,) = data_uris(view.html(), "image/jpeg")
    assert decoded(jpeg).shape == (256, 213, 3)


# -- attachments ------------------------------------------------------------------------------------
def media_with_files(root: Path) -> Path:
    media = root / "cd"
    shutil.copytree(TEST_FILES / "dicomdirtests", media)
    (media / "report.pdf").write_bytes(tiny_pdf())
    Image.new("RGB", (8, 6), "red").save(media / "photo.jpg")
    (media / "notes.txt").write_text("dose <b>2 mGy</b>\n", encoding="utf-8")
    (media / "index.htm").write_text("<html><script>alert(1)</script><p>Viewer</p></html>")
    (media / "model.stl").write_text("solid cube\nendsolid cube\n")
    (media / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    return media


def test_attachments_of_media_are_listed_and_opened(tmp_path: Path) -> None:
    media = media_with_files(tmp_path)
    dicomnb.import_dicomdir(media)
    view = AttachmentsView()  # the catalog's attachments (and pictures)
    by_name = {a.name: a for a in view.files}
    assert {"report.pdf", "photo.jpg", "notes.txt", "index.htm", "model.stl", "README.txt"} <= set(by_name)
    assert by_name["report.pdf"].kind == "pdf" and by_name["photo.jpg"].kind == "image"
    assert by_name["model.stl"].size == (media / "model.stl").stat().st_size
    page = view.html()
    assert view.kind == "attachments" and view.title == f"{len(view.files)} attached files"
    rows = dict(re.findall(r"<tr><td title=\"[^\"]*\">([^<]+)</td>(.*?)</tr>", page, re.S))
    assert "<details><summary>open</summary>" in rows["report.pdf"]
    assert data_uris(rows["report.pdf"], "application/pdf") == [tiny_pdf()] * 2
    assert data_uris(rows["photo.jpg"], "image/jpeg") == [(media / "photo.jpg").read_bytes()] * 2
    assert "dose &lt;b&gt;2 mGy&lt;/b&gt;" in rows["notes.txt"]  # text, escaped
    # a page is shown sandboxed: its script is text inside srcdoc, never markup of ours
    assert "<iframe sandbox srcdoc=\"&lt;html&gt;&lt;script&gt;alert(1)" in rows["index.htm"]
    assert "<script>" not in page
    assert "a browser cannot show it" in rows["model.stl"]
    assert "not text a browser can show" in rows["blob.txt"]


def test_attachments_from_paths_and_the_size_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    media = media_with_files(tmp_path)
    view = AttachmentsView([media / "report.pdf", str(media / "notes.txt"), media / "photo.jpg"])
    assert [(a.name, a.kind) for a in view.files] == [("report.pdf", "pdf"), ("notes.txt", "document"),
                                                      ("photo.jpg", "image")]
    monkeypatch.setattr(documents, "EMBED_LIMIT", 100)
    page = view.html()
    assert "data:application/pdf" not in page and "is more than the 100 bytes embedded in a notebook" in page
    assert "dose &lt;b&gt;" in page  # the small text file is still shown
    monkeypatch.setattr(documents, "EMBED_LIMIT", 10_000)
    monkeypatch.setattr(documents, "TOTAL_EMBED_LIMIT", 700)
    page = view.html()
    assert "data:application/pdf" in page and "not embedded: this list already holds" in page


def test_attachments_in_a_zip_archive(tmp_path: Path) -> None:
    media = media_with_files(tmp_path)
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(media.rglob("*")):
            zf.write(path, "export/" + path.relative_to(media).as_posix())
    dicomnb.import_zip(archive)
    view = AttachmentsView(dicomnb.catalog.attachments)
    pdf = next(a for a in view.files if a.name == "report.pdf")
    assert pdf.member == "export/report.pdf" and pdf.read() == tiny_pdf()


def test_attachments_widget_reads_only_what_is_chosen(tmp_path: Path) -> None:
    require_module("ipywidgets", "notebook")
    media = media_with_files(tmp_path)
    view = AttachmentsView([media / "model.stl", media / "notes.txt"])
    box = view.widget()
    title, chooser, shown = box.children
    assert shown.value == "" and html.escape(view.title) in title.value
    chooser.value = 1
    assert "dose &lt;b&gt;2 mGy&lt;/b&gt;" in shown.value
    (media / "model.stl").unlink()
    chooser.value = 0
    assert "a browser cannot show a 3d-model file" in shown.value
    empty = AttachmentsView([])
    assert "none" in empty.html() and empty.title == "0 attached files"
