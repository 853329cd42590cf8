"""Documents and other files: encapsulated PDF, plain pictures, and the attachments of media.

- :class:`PdfView`: an Encapsulated PDF instance (or a plain ``.pdf``) in the browser's own PDF
  viewer, from a data URI, with a download link. The DICOM value may carry one pad byte after
  the document (values have even lengths); Encapsulated Document Length says where it ends.
- :class:`PictureView`: a PNG, JPEG, GIF, BMP or TIFF found beside the DICOM files. What
  browsers show is embedded as it is; TIFF (which they do not show) and BMP become PNG.
- :class:`AttachmentsView`: the non-DICOM files of a DICOMDIR's media (``catalog.attachments``),
  or any files: name, kind, size, and for what a browser can show (PDF, pictures, text, HTML)
  the file itself, inline and as a download.

What a file is comes from its first bytes (:func:`dicomnb.core.detect.sniff`), not its name.
Files larger than :data:`EMBED_LIMIT` are never embedded: they would live in the notebook file
(base64 makes them a third larger); the view says so and gives the path.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dicomnb.core.detect import HEAD_SIZE, Kind, attachment_kind, sniff
from dicomnb.core.errors import DicomnbError, InputError, UnreadableFileError
from dicomnb.core.volume import read_dataset
from dicomnb.render.base import View
from dicomnb.render.sr import format_person_name

if TYPE_CHECKING:
    import pandas as pd

    from dicomnb.core.model import AttachmentRecord, ImageRecord, InstanceRecord

__all__ = [
    "EMBED_LIMIT",
    "PDF_SOP_CLASS",
    "Attachment",
    "AttachmentsView",
    "PdfView",
    "PictureView",
    "is_pdf",
]

#: Encapsulated PDF Storage.
PDF_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"

#: Files larger than this (bytes) are not embedded in the page.
EMBED_LIMIT = 20 * 1024 * 1024

#: The static HTML of an attachments list embeds at most this much in all.
TOTAL_EMBED_LIMIT = 50 * 1024 * 1024

#: A picture too large to embed is shown as a JPEG preview at most this many pixels wide and high.
PREVIEW_SIZE = 2048

#: Text attachments are shown up to this many characters.
TEXT_LIMIT = 200_000

_ATTACHMENTS_CSS = """<style>
.dicomnb-attachments td {vertical-align: top; padding: 2px 8px 2px 0;}
.dicomnb-attachments td.dicomnb-size {text-align: right; white-space: nowrap;}
.dicomnb-attachments th {text-align: left;}
</style>"""
_MIME = {Kind.PNG: "image/png", Kind.JPEG: "image/jpeg", Kind.GIF: "image/gif", Kind.BMP: "image/bmp",
         Kind.TIFF: "image/tiff"}
_TEXT_EXTENSIONS = {".txt", ".csv", ".tsv", ".json", ".xml", ".md", ".log", ".ini", ".cfg", ""}
_HTML_EXTENSIONS = {".htm", ".html"}


def _size(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _too_large(size: int, where: str, limit: int | None = None) -> str:
    limit = EMBED_LIMIT if limit is None else limit
    return (f"<div class='dicomnb-too-large'>{_size(size)} is more than the {_size(limit)} embedded in a "
            f"notebook; the file is {html.escape(where)}</div>")


def _safe_name(name: str, default: str) -> str:
    """A file name for a download: no folders, no characters that trouble a file system."""
    cleaned = re.sub(r"[^\w.\- ]+", "_", name).strip(" ._")
    return cleaned or default


def is_pdf(head: bytes) -> bool:
    """True if the bytes start a PDF (the ``%PDF-`` marker may follow up to 1 kB of other bytes).

    A DICOM file is never a PDF, even when the PDF it encapsulates starts in its first kilobyte.
    """
    return head[128:132] != b"DICM" and b"%PDF-" in head[:1024]


# -- reading files and archive entries --------------------------------------------------------------
def _in_archive(path: str, member: str | None, source: str, origin: str) -> bool:
    # An entry imported from a ZIP without copying stays in its archive (see core.archive).
    return member is not None and source == "zip" and path == origin


def _read(path: str, member: str | None = None, source: str = "local", origin: str = "") -> bytes:
    """The bytes of a file, or of an archive entry the catalog left in its archive."""
    if _in_archive(path, member, source, origin):
        from dicomnb.core.archive import read_entry

        return read_entry(path, member or "")
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read(1024)
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _record_bytes(source: Any) -> tuple[bytes, str] | None:
    """``(bytes, name)`` of an image or attachment record, or ``None`` for anything else."""
    if all(hasattr(source, k) for k in ("path", "member", "source", "origin")) and not hasattr(
            source, "SOPInstanceUID"):
        member = source.member if isinstance(source.member, str) else None  # a DataFrame's NaN
        name = member or source.path
        return _read(source.path, member, source.source, source.origin), name
    return None


# -- PDF --------------------------------------------------------------------------------------------
class PdfView(View):
    """An encapsulated PDF (or a plain PDF file), shown by the browser's PDF viewer.

    Parameters
    ----------
    source : InstanceRecord, str, path, pydicom.Dataset, or an attachment record
        An Encapsulated PDF instance, or a ``.pdf`` file.
    title : str
        The view's one-line title (default: the Document Title and the patient).

    Attributes
    ----------
    data : bytes
        The PDF, without the DICOM pad byte.
    name : str
        A file name for a download.

    Raises
    ------
    InputError
        The source holds no PDF (another encapsulated document, or no document at all).
    """

    kind = "pdf"

    def __init__(self, source: InstanceRecord | str | os.PathLike[str] | Any, *, title: str = "") -> None:
        self.where = ""
        record = _record_bytes(source)
        if record is not None:
            self.data, where = record
            self.where = where
            self.name = _safe_name(os.path.basename(where), "document.pdf")
            if not is_pdf(self.data):
                raise InputError(f"{where} is not a PDF")
            super().__init__(title or os.path.basename(where))
            return
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            self.where = path
            if is_pdf(_head(path)):
                self.data = _read(path)
                self.name = _safe_name(os.path.basename(path), "document.pdf")
                super().__init__(title or os.path.basename(path))
                return
        ds = read_dataset(source)
        self.where = self.where or str(getattr(source, "path", "") or ds.get("SOPInstanceUID") or "")
        self.data = self._from_dataset(ds)
        document_title = str(ds.get("DocumentTitle") or "")
        self.name = _safe_name(document_title + ".pdf" if document_title else "",
                               f"{ds.get('SOPInstanceUID') or 'document'}.pdf")
        patient = format_person_name(ds.PatientName) if ds.get("PatientName") else ""
        super().__init__(title or " · ".join(p for p in (document_title or "Encapsulated PDF", patient) if p))

    @staticmethod
    def _from_dataset(ds: Any) -> bytes:
        mime = str(ds.get("MIMETypeOfEncapsulatedDocument") or "").strip().lower()
        if "EncapsulatedDocument" not in ds:
            raise InputError(f"no encapsulated document in this instance (SOP class {ds.get('SOPClassUID', '?')})")
        if mime and mime != "application/pdf":
            raise InputError(f"the encapsulated document is {mime}, not a PDF")
        data = bytes(ds.EncapsulatedDocument)
        length = ds.get("EncapsulatedDocumentLength")
        if length is not None and 0 < int(length) <= len(data):
            data = data[:int(length)]
        elif data.endswith(b"%%EOF\n\x00") or data.endswith(b"%%EOF\x00"):
            data = data[:-1]  # no length given: the pad byte after the end marker
        if not is_pdf(data):
            raise InputError("the encapsulated document does not start like a PDF (no %PDF- marker)")
        return data

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the PDF to ``path``."""
        with open(path, "wb") as out:
            out.write(self.data)

    def html(self) -> str:
        """The PDF in an ``<iframe>`` (the browser's viewer) and a download link, both data URIs."""
        head = f"<div class='dicomnb-pdf'><b>{html.escape(self.title)}</b> ({_size(len(self.data))})"
        if len(self.data) > EMBED_LIMIT:
            return (f"{head}{_too_large(len(self.data), self.where or self.name)}"
                    f"<div>write it out with <code>view.save('{html.escape(self.name)}')</code></div></div>")
        uri = _data_uri(self.data, "application/pdf")
        name = html.escape(self.name, quote=True)
        return (f"{head}<div><a download=\"{name}\" href=\"{uri}\">Download {html.escape(self.name)}</a></div>"
                f"<iframe src=\"{uri}\" title=\"{name}\" "
                "style='width: 100%; height: 720px; border: 1px solid #ccc;'></iframe></div>")


# -- pictures ---------------------------------------------------------------------------------------
def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def _to_png(image: Any) -> bytes:
    """A Pillow image as PNG, its pixels made something PNG holds (8-bit grey, RGB, RGBA...)."""
    import numpy as np
    from PIL import Image

    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        # 16-bit, 32-bit and float TIFFs: stretched to 8 bits between their minimum and maximum
        values = np.asarray(image, dtype=np.float64)
        low, high = (float(np.nanmin(values)), float(np.nanmax(values))) if values.size else (0.0, 1.0)
        scaled = np.nan_to_num(np.clip((values - low) / ((high - low) or 1.0) * 255, 0, 255))
        image = Image.fromarray(scaled.astype(np.uint8))
    elif image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB...
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class PictureView(View):
    """A standard picture (PNG, JPEG, GIF, BMP, TIFF) found among the imported files.

    Parameters
    ----------
    source : str, path, bytes, or an image record (a row of ``catalog.images``)
        The picture.
    title : str
        The view's one-line title (default: the file's name).

    Attributes
    ----------
    format : Kind
        What the file is (by its first bytes).
    data : bytes
        What the page shows: the file itself, or a PNG made from it (TIFF, BMP).
    mime : str
        The type of ``data``.
    width, height : int or None
        Its size in pixels (``None`` when Pillow is not installed to read it).
    pages : int
        Pages (frames) in the file; the first is shown.

    Raises
    ------
    InputError
        The file is not one of those formats, or cannot be decoded.
    DependencyMissing
        A TIFF, and Pillow is not installed to convert it.
    """

    kind = "picture"

    def __init__(self, source: ImageRecord | str | os.PathLike[str] | bytes | Any, *, title: str = "") -> None:
        record = _record_bytes(source)
        if record is not None:
            raw, where = record
        elif isinstance(source, (bytes, bytearray)):
            raw, where = bytes(source), "picture"
        elif isinstance(source, (str, os.PathLike)):
            where = os.fspath(source)
            raw = _read(where)
        else:
            raise InputError(f"cannot show {type(source).__name__} as a picture: give a path or an image record")
        self.where = where
        self.format = sniff(raw[:HEAD_SIZE])
        if not self.format.is_image:
            raise InputError(f"{where} is not a picture dicomnb shows (PNG, JPEG, GIF, BMP, TIFF)")
        self.original_size = len(raw)
        self.width: int | None = None
        self.height: int | None = None
        self.pages = 1
        self.preview = False
        self.data, self.mime = raw, _MIME[self.format]
        pillow = _pillow()
        if pillow is None:
            if self.format is Kind.TIFF:
                from dicomnb.core.deps import import_optional_dependency

                import_optional_dependency("PIL", "notebook")  # raises, naming the extra
        else:
            self._decode(pillow, raw)
        super().__init__(title or os.path.basename(where))

    def _decode(self, pillow: Any, raw: bytes) -> None:
        try:
            with pillow.open(io.BytesIO(raw)) as image:
                self.width, self.height = image.size
                self.pages = int(getattr(image, "n_frames", 1) or 1)
                if self.format in (Kind.TIFF, Kind.BMP):
                    image.seek(0)
                    self.data, self.mime = _to_png(image), "image/png"
                elif len(raw) > EMBED_LIMIT:
                    # too large to embed as it is: a preview a browser can still hold
                    preview = image.convert("RGB")
                    preview.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
                    out = io.BytesIO()
                    preview.save(out, format="JPEG", quality=85)
                    self.data, self.mime, self.preview = out.getvalue(), "image/jpeg", True
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of saying "cannot decode"
            raise InputError(f"{self.where} cannot be decoded as {self.format.value.upper()}: {exc}") from exc

    def html(self) -> str:
        """The picture, embedded (``max-width: 100%``), under a line saying what it is."""
        size = f"{self.width}×{self.height}, " if self.width else ""
        pages = f", page 1 of {self.pages}" if self.pages > 1 else ""
        note = f" (a preview: the file is more than {_size(EMBED_LIMIT)})" if self.preview else ""
        line = (f"<div><b>{html.escape(self.title)}</b> ({self.format.value.upper()}, {size}"
                f"{_size(self.original_size)}{pages}){note}</div>")
        if len(self.data) > EMBED_LIMIT:
            return f"<div class='dicomnb-picture'>{line}{_too_large(len(self.data), self.where)}</div>"
        alt = html.escape(self.title, quote=True)
        return (f"<div class='dicomnb-picture'>{line}<img src=\"{_data_uri(self.data, self.mime)}\" alt=\"{alt}\" "
                "style='max-width: 100%;'/></div>")


# -- attachments ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attachment:
    """One file of an attachments list.

    Attributes
    ----------
    name : str
        Its name (the archive entry's, or the path's last part).
    path : str
        Where it is (the archive, for an entry left in its archive).
    kind : str
        A label: ``pdf``, ``image``, ``document``, ``spreadsheet``, ``3d-model``...
    size : int
        Bytes.
    member : str or None
        The archive entry, when it is read from an archive.
    """

    name: str
    path: str
    kind: str
    size: int
    member: str | None = None
    source: str = "local"
    origin: str = ""

    def read(self) -> bytes:
        """The file's bytes."""
        return _read(self.path, self.member, self.source, self.origin)

    @property
    def where(self) -> str:
        """The path, with the entry for a file inside an archive."""
        return f"{self.path}::{self.member}" if _in_archive(self.path, self.member, self.source, self.origin) \
            else self.path


def _attachments_from(source: Any) -> list[Attachment]:
    import pandas as pd

    if source is None:
        from dicomnb.api import catalog

        return _attachments_from(catalog.attachments) + _attachments_from(catalog.images)
    if isinstance(source, pd.DataFrame):
        rows = []
        for row in source.to_dict("records"):
            member = row.get("member")
            member = None if member is None or (isinstance(member, float) and member != member) else str(member)
            kind = str(row["kind"]) if "kind" in row else "image"
            name = os.path.basename(member or str(row["path"]))
            rows.append(Attachment(name, str(row["path"]), kind, int(row.get("size") or 0), member,
                                   str(row.get("source") or "local"), str(row.get("origin") or "")))
        return rows
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    rows = []
    for item in source:
        if isinstance(item, (str, os.PathLike)):
            path = os.fspath(item)
            try:
                size = os.path.getsize(path)
            except OSError as exc:
                raise UnreadableFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
            head = _head(path)
            kind = "image" if sniff(head[:HEAD_SIZE]).is_image else "pdf" if is_pdf(head) else attachment_kind(path)
            rows.append(Attachment(os.path.basename(path), path, kind, size))
        else:  # an AttachmentRecord or ImageRecord
            kind = getattr(item, "kind", None) or "image"
            rows.append(Attachment(os.path.basename(item.member or item.path), item.path, kind, int(item.size),
                                   item.member, item.source, item.origin))
    return rows


def _is_text(data: bytes) -> bool:
    sample = data[:4096]
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(sample) - 3  # a character cut by the sample's end
    return True


def showable(attachment: Attachment) -> bool:
    """Whether a browser can show the file: a PDF, a picture, text or HTML (by its kind and name)."""
    extension = os.path.splitext(attachment.name)[1].lower()
    return attachment.kind in ("pdf", "image") or extension in _TEXT_EXTENSIONS | _HTML_EXTENSIONS


def preview_html(attachment: Attachment, limit: int | None = None) -> str:
    """The file shown inline (PDF viewer, picture, text, sandboxed HTML) with a download link.

    A file larger than ``limit`` (default :data:`EMBED_LIMIT`), or one a browser cannot show,
    gets a sentence instead.
    """
    limit = EMBED_LIMIT if limit is None else limit
    if not showable(attachment):
        return (f"<div class='dicomnb-not-shown'>a browser cannot show a {html.escape(attachment.kind)} file; "
                f"it is {html.escape(attachment.where)}</div>")
    if attachment.size > limit:
        return _too_large(attachment.size, attachment.where, limit)
    data = attachment.read()
    name = html.escape(_safe_name(attachment.name, "file"), quote=True)
    head = data[:1024]
    extension = os.path.splitext(attachment.name)[1].lower()
    if is_pdf(head):
        mime = "application/pdf"
        uri = _data_uri(data, mime)
        body = (f"<iframe src=\"{uri}\" title=\"{name}\" "
                "style='width: 100%; height: 600px; border: 1px solid #ccc;'></iframe>")
    elif sniff(head[:HEAD_SIZE]).is_image:
        picture = PictureView(data, title=attachment.name)
        mime = _MIME[picture.format]
        uri = _data_uri(data, mime)
        body = (f"<img src=\"{_data_uri(picture.data, picture.mime)}\" alt=\"{name}\" "
                "style='max-width: 100%; max-height: 600px;'/>")
    elif _is_text(data):
        text = data.decode("utf-8", errors="replace")
        mime = "text/html" if extension in _HTML_EXTENSIONS else "text/plain"
        uri = _data_uri(data, mime + ";charset=utf-8")
        if extension in _HTML_EXTENSIONS:
            # sandboxed: the page is shown, its scripts and forms do not run
            body = (f"<iframe sandbox srcdoc=\"{html.escape(text, quote=True)}\" title=\"{name}\" "
                    "style='width: 100%; height: 400px; border: 1px solid #ccc;'></iframe>")
        else:
            cut = f"\n… ({len(text) - TEXT_LIMIT} more characters)" if len(text) > TEXT_LIMIT else ""
            body = (f"<pre style='max-height: 400px; overflow: auto; white-space: pre-wrap;'>"
                    f"{html.escape(text[:TEXT_LIMIT] + cut)}</pre>")
    else:
        return (f"<div class='dicomnb-not-shown'>{html.escape(attachment.name)} is not text a browser can show; "
                f"it is {html.escape(attachment.where)}</div>")
    return f"<div><a download=\"{name}\" href=\"{uri}\">Download {html.escape(attachment.name)}</a></div>{body}"


class AttachmentsView(View):
    """The non-DICOM files found with the DICOM ones: listed, and opened where a browser can.

    Parameters
    ----------
    source : DataFrame, sequence of paths or records, or None
        ``catalog.attachments`` (or ``catalog.images``), paths, records; by default the
        process catalog's attachments and pictures.
    title : str
        The view's one-line title.

    Attributes
    ----------
    files : list of Attachment
        The files listed, in the order given.
    """

    kind = "attachments"

    def __init__(self, source: pd.DataFrame | list[str | os.PathLike[str] | AttachmentRecord | ImageRecord] | None
                 = None, *, title: str = "") -> None:
        self.files = _attachments_from(source)
        n = len(self.files)
        super().__init__(title or f"{n} attached file{'s' if n != 1 else ''}")

    def html(self) -> str:
        """A table of the files; each one a browser can show opens inline (up to the size limits)."""
        if not self.files:
            return f"<div class='dicomnb-attachments'><b>{html.escape(self.title)}</b>: none</div>"
        rows = []
        budget = TOTAL_EMBED_LIMIT
        for attachment in self.files:
            if showable(attachment) and attachment.size <= EMBED_LIMIT and attachment.size > budget:
                shown = (f"<span class='dicomnb-too-large'>not embedded: this list already holds "
                         f"{_size(TOTAL_EMBED_LIMIT - budget)}; open it with AttachmentsView([path])</span>")
            elif showable(attachment):
                shown = f"<details><summary>open</summary>{preview_html(attachment)}</details>"
                if attachment.size <= EMBED_LIMIT:
                    budget -= attachment.size
            else:
                shown = "<span style='color: #888;'>a browser cannot show it</span>"
            rows.append(f"<tr><td title=\"{html.escape(attachment.where, quote=True)}\">"
                        f"{html.escape(attachment.name)}</td><td>{html.escape(attachment.kind)}</td>"
                        f"<td class='dicomnb-size'>{_size(attachment.size)}</td><td>{shown}</td></tr>")
        return (f"{_ATTACHMENTS_CSS}<div class='dicomnb-attachments'><b>{html.escape(self.title)}</b>"
                "<table><thead><tr><th>name</th><th>kind</th><th>size</th><th></th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table></div>")

    def build_widget(self) -> Any:
        """A list of the files; the one selected is read and shown then (nothing embedded before)."""
        import ipywidgets as widgets

        if not self.files:
            return widgets.HTML(self.html())
        options = [(f"{a.name} ({a.kind}, {_size(a.size)})", i) for i, a in enumerate(self.files)]
        chooser = widgets.Select(options=options, value=None, rows=min(10, len(options)),
                                 layout=widgets.Layout(width="520px"))
        shown = widgets.HTML()

        def show(change: Any) -> None:
            if change["new"] is not None:
                try:
                    shown.value = preview_html(self.files[change["new"]])
                except DicomnbError as exc:  # unreadable, an archive's password forgotten...
                    shown.value = f"<div class='dicomnb-error'>{html.escape(str(exc))}</div>"

        chooser.observe(show, names="value")
        return widgets.VBox([widgets.HTML(f"<b>{html.escape(self.title)}</b>"), chooser, shown])
