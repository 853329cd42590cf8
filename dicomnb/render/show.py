"""``dicomnb.show(x)``: the viewer chosen by the kind of object, as a DICOM viewer opens
"the default viewer according to the files".

``x`` is a series (its SeriesInstanceUID, or a list of its records), an instance (its
SOPInstanceUID, an :class:`~dicomnb.core.model.InstanceRecord`, a pydicom dataset read from
a file), a row of one of the catalog's DataFrames (patients, studies, series, instances,
images, attachments), or a path (a DICOM file, an image, a PDF, any other file).

=========================================  ==============================================
what it is                                 viewer
=========================================  ==============================================
SR document (SOP class ...88.*)            :class:`~dicomnb.render.sr.SrView`
Basic Voice Audio, or modality AU          :class:`~dicomnb.render.waveform.AudioView`
other waveforms (ECG, haemodynamic ...)    :class:`~dicomnb.render.waveform.WaveformView`
Encapsulated PDF, a .pdf file              :class:`~dicomnb.render.documents.PdfView`
no image (RT plan, key objects ...)        :class:`~dicomnb.render.header.HeaderView`
one single-frame image                     :class:`~dicomnb.render.stack.ImageView`
several images, or a multi-frame one       :class:`~dicomnb.render.stack.StackView`
``view="mpr"`` on a volume                 :class:`~dicomnb.render.mpr.MprView`
a study or a patient                       :class:`StudyView` (a thumbnail per series)
PNG, JPEG, TIFF, BMP, GIF                  :class:`~dicomnb.render.documents.PictureView`
any other file                             :class:`~dicomnb.render.documents.AttachmentsView`
=========================================  ==============================================
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dicomnb.core.errors import InputError
from dicomnb.core.model import AttachmentRecord, ImageRecord, InstanceRecord
from dicomnb.render.base import View, png_html

if TYPE_CHECKING:
    from dicomnb.core.catalog import Catalog

__all__ = ["VIEWS", "StudyView", "show", "viewer_kind"]

#: What ``show(x, view=...)`` accepts besides the default choice.
VIEWS = ("image", "stack", "mpr", "sr", "waveform", "audio", "pdf", "header", "picture", "attachments")

SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
WAVEFORM_PREFIX = "1.2.840.10008.5.1.4.1.1.9."
BASIC_VOICE_AUDIO = "1.2.840.10008.5.1.4.1.1.9.4.1"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
#: SOP classes that hold no pixel data and have no viewer of their own (shown as their header).
_NOT_IMAGES = ("1.2.840.10008.5.1.4.1.1.481.", "1.2.840.10008.5.1.4.1.1.66")


def _catalog() -> Catalog:
    from dicomnb.api import catalog

    return catalog


def viewer_kind(sop_class: str | None, modality: str | None = None, *, instances: int = 1,
                frames: int | None = None, rows: int | None = 1) -> str:
    """The viewer kind for objects of ``sop_class`` (``"image"``, ``"stack"``, ``"sr"``...).

    ``instances`` is how many are shown together (a series), ``frames`` the frames of one,
    ``rows`` its Rows (None: no image, so its header is shown).
    """
    uid = sop_class or ""
    if uid.startswith(SR_PREFIX):
        return "sr"
    if uid == BASIC_VOICE_AUDIO or (uid.startswith(WAVEFORM_PREFIX) and (modality or "").upper() == "AU"):
        return "audio"
    if uid.startswith(WAVEFORM_PREFIX):
        return "waveform"
    if uid == ENCAPSULATED_PDF:
        return "pdf"
    if rows is None:
        return "header"
    if instances > 1 or (frames or 1) > 1:
        return "stack"
    return "image"


def _view_of(kind: str, records: Sequence[InstanceRecord | str], title: str) -> View:
    """Build the ``kind`` view of ``records`` (one series, or one instance)."""
    first = records[0]
    if kind == "sr":
        from dicomnb.render.sr import SrView

        return SrView(first, title=title)
    if kind == "audio":
        from dicomnb.render.waveform import AudioView

        return AudioView(first, title=title)
    if kind == "waveform":
        from dicomnb.render.waveform import WaveformView

        return WaveformView(first, title=title)
    if kind == "pdf":
        from dicomnb.render.documents import PdfView

        return PdfView(first, title=title)
    if kind == "header":
        from dicomnb.render.header import HeaderView

        return HeaderView(first, title=title)
    if kind == "mpr":
        from dicomnb.render.mpr import MprView

        return MprView(list(records), title=title)
    if kind == "stack":
        from dicomnb.render.stack import StackView

        return StackView(list(records), title=title)
    if kind == "image":
        from dicomnb.render.stack import ImageView

        return ImageView(first, title=title)
    raise InputError(f"there is no {kind!r} view of DICOM objects: choose one of {', '.join(VIEWS[:8])}")


def _title(record: InstanceRecord, count: int) -> str:
    what = " ".join(str(v) for v in (record.Modality, record.SeriesDescription) if v) or "series"
    who = record.PatientName or record.PatientID or ""
    return f"{who} · {what} ({count} instance{'s' if count != 1 else ''})".strip(" ·")


def show_records(records: Sequence[InstanceRecord], view: str | None = None) -> View:
    """The view of some records of one series (or of one instance)."""
    if not records:
        raise InputError("nothing to show: the series has no instances in the catalog")
    first = records[0]
    kind = view or viewer_kind(first.SOPClassUID, first.Modality, instances=len(records),
                               frames=first.NumberOfFrames, rows=first.Rows)
    if kind in ("sr", "audio", "waveform", "pdf", "header") and len(records) > 1 and view is None:
        # documents are shown one at a time: the first, and the others on demand
        return _view_of(kind, [first], _title(first, 1) + f" — 1 of {len(records)}")
    return _view_of(kind, list(records), _title(first, len(records)))


class StudyView(View):
    """A study (or a patient): one thumbnail per series, with what each holds.

    ``series`` lists the SeriesInstanceUIDs; ``show(view.series[i])`` opens one.
    """

    kind = "study"

    def __init__(self, series: Sequence[str], *, title: str = "") -> None:
        super().__init__(title)
        self.series = list(series)

    def html(self) -> str:
        from dicomnb.render.thumbnail import thumbnail_png

        catalog = _catalog()
        cells = []
        for uid in self.series:
            records = catalog.series_records(uid)
            first = records[0]
            png = thumbnail_png(uid, 96)
            picture = png_html(png, alt=uid) if png else "<div style='width:96px;height:96px'>no image</div>"
            label = html.escape(" ".join(str(v) for v in (first.SeriesNumber, first.Modality,
                                                         first.SeriesDescription) if v is not None))
            cells.append(f"<figure style='display:inline-block;margin:4px;text-align:center' title='{uid}'>"
                         f"{picture}<figcaption style='font-size:80%'>{label}<br>{len(records)} inst.</figcaption>"
                         "</figure>")
        head = f"<div><b>{html.escape(self.title)}</b></div>" if self.title else ""
        return f"<div class='dicomnb-study-view'>{head}{''.join(cells)}</div>"


def _series_of(column: str, value: str) -> list[str]:
    frame = _catalog().series
    if column not in frame.columns:
        return []
    return list(frame.loc[frame[column] == value, "SeriesInstanceUID"])


def _from_uid(uid: str, view: str | None) -> View | None:
    catalog = _catalog()
    record = catalog.get(uid)
    if record is not None:
        return show_records([record], view)
    try:
        records = catalog.series_records(uid)
    except InputError:  # not a series of the catalog: perhaps a study or a patient
        records = []
    if records:
        return show_records(records, view)
    for column, what in (("StudyInstanceUID", "study"), ("PatientID", "patient")):
        series = _series_of(column, uid)
        if series:
            return StudyView(series, title=f"{what} {uid}: {len(series)} series")
    return None


def _from_path(path: str, view: str | None) -> View:
    from dicomnb.core.detect import Kind, attachment_kind, sniff

    if os.path.isdir(path):
        raise InputError(f"{path} is a folder: import it first (dicomnb.import_local({path!r})), "
                         "then show one of its series")
    if not os.path.exists(path):
        raise InputError(f"no such file, and no instance, series or study of that UID in the catalog: {path}")
    with open(path, "rb") as f:
        head = f.read(132)
    kind, pdf = sniff(head), head.startswith(b"%PDF-")
    if kind is Kind.DICOM or (not pdf and not kind.is_image and _reads_as_dicom(path)):
        from dicomnb.core.volume import read_dataset

        ds = read_dataset(path, stop_before_pixels=True)
        record = _catalog().get(str(ds.get("SOPInstanceUID", "")))
        if record is not None and record.overrides and _same_file(record.path, path):
            return show_records([record], view)  # a retrieved file the catalog shows with its manifest's values
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        rows = ds.get("Rows")  # as the catalog's records: no Rows, no image
        chosen = view or viewer_kind(str(ds.get("SOPClassUID", "")), str(ds.get("Modality", "")), frames=frames,
                                     rows=rows)
        return _view_of(chosen, [path], os.path.basename(path))
    if kind.is_image:
        from dicomnb.render.documents import PictureView

        return PictureView(path, title=os.path.basename(path))
    if pdf or attachment_kind(path) == "pdf":
        from dicomnb.render.documents import PdfView

        return PdfView(path, title=os.path.basename(path))
    from dicomnb.render.documents import AttachmentsView

    return AttachmentsView([path], title=os.path.basename(path))


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


def _reads_as_dicom(path: str) -> bool:
    """A dataset written without preamble (the catalog takes those too)."""
    from dicomnb.core.classify import classify_file

    return isinstance(classify_file(path), InstanceRecord)


def _from_row(row: Any, view: str | None) -> View:
    get = row.get
    for column in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID"):
        value = get(column)
        if isinstance(value, str) and value:
            shown = _from_uid(value, view)
            if shown is not None:
                return shown
            raise InputError(f"the row's {column} {value} is not in the catalog (was it cleared?)")
    path = get("path")
    if isinstance(path, str) and path:
        if get("member"):
            raise InputError(f"{path}::{get('member')} is inside an archive: import it with copy=True to show it")
        return _from_path(path, view)
    raise InputError("this row names no instance, series, study, patient or file: "
                     "pass a row of one of the catalog's tables")


def show(x: Any, *, view: str | None = None) -> View:
    """Show ``x`` inline with the viewer its kind calls for, and return the view.

    Parameters
    ----------
    x : str, InstanceRecord, pandas row, pydicom Dataset, or path
        A SeriesInstanceUID or SOPInstanceUID (or a StudyInstanceUID / PatientID: a
        thumbnail per series), a record or a list of records of one series, a row of a
        catalog DataFrame (``dicomnb.catalog.series.iloc[0]``), or a file's path (DICOM, an
        image, a PDF, another file).
    view : str, optional
        Another viewer than the default: ``"mpr"`` for a volume's three planes,
        ``"image"`` for one frame, ``"stack"``... (see :data:`VIEWS`).

    Returns
    -------
    View
        Displayed as a cell's result it renders (interactive with ipywidgets in a live
        kernel, a static image or document otherwise); ``view.html()`` is the static form.

    Raises
    ------
    InputError
        ``x`` names nothing that can be shown (with what it expected).
    DecoderMissing
        The pixel data needs a decoder that is not installed (names the extra).
    """
    if view is not None and view not in VIEWS:
        raise InputError(f"unknown view {view!r}: choose one of {', '.join(VIEWS)}")
    if isinstance(x, View):
        return x
    if isinstance(x, InstanceRecord):
        return show_records([x], view)
    if isinstance(x, ImageRecord | AttachmentRecord):
        return _from_row({"path": x.path, "member": x.member}, view)
    if isinstance(x, os.PathLike):
        return _from_path(os.fspath(x), view)
    if isinstance(x, str):
        shown = _from_uid(x, view) if os.sep not in x else None
        return shown if shown is not None else _from_path(os.path.expanduser(x), view)
    if isinstance(x, (list, tuple)) and x and all(isinstance(r, InstanceRecord) for r in x):
        if len({r.SeriesInstanceUID for r in x}) > 1:
            raise InputError("these records belong to several series: show one series at a time")
        return show_records(list(x), view)
    if hasattr(x, "SOPClassUID") and hasattr(x, "filename") and x.filename:  # a pydicom dataset read from a file
        return _from_path(str(x.filename), view)
    if hasattr(x, "iloc") and hasattr(x, "columns"):  # a DataFrame: one row, or one series
        if len(x) == 1:
            return _from_row(x.iloc[0], view)
        if "SeriesInstanceUID" in x.columns and x["SeriesInstanceUID"].nunique() == 1:
            return _from_uid(str(x["SeriesInstanceUID"].iloc[0]), view) or _from_row(x.iloc[0], view)
        raise InputError(f"a table of {len(x)} rows: show one row (df.iloc[0]) or one series")
    if hasattr(x, "get") and hasattr(x, "index"):  # a pandas row
        return _from_row(x, view)
    raise InputError(f"cannot show a {type(x).__name__}: pass a series or instance UID, a record, "
                     "a row of a catalog table, or a file's path")
