"""Structured reports (SR) as readable HTML: the content tree, its values and references.

A structured report is a tree of content items. Each item names a concept (its Concept Name
Code Sequence, shown by its Code Meaning), says how it relates to its parent (``CONTAINS``,
``HAS PROPERTIES``, ``INFERRED FROM``...) and holds a value of one of the SR value types
(PS3.3 C.17.3): text, a number with its unit, a code, a date or time, a person's name, a UID,
a reference to an image, waveform or other object, spatial or temporal coordinates, or a
container of further items. An item can also point at another item of the tree by its
position (a "by-reference" relationship, ``1.3.2``); that becomes a link.

:class:`SrView` parses the tree once into :class:`ContentItem` objects (what tests and
notebooks can look at) and renders them: containers and items with children as collapsible
``<details>``, every value HTML-escaped, references to instances marked by whether the
catalog holds them (so the user knows whether ``dicomnb.show`` can open them).
"""

from __future__ import annotations

import html
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dicomnb.core.errors import InputError
from dicomnb.core.volume import read_dataset
from dicomnb.render.base import View

if TYPE_CHECKING:
    from dicomnb.core.model import InstanceRecord

__all__ = [
    "ContentItem",
    "Reference",
    "SrView",
    "code_text",
    "format_date",
    "format_datetime",
    "format_person_name",
    "format_time",
    "is_structured_report",
    "parse_tree",
    "temporal_text",
    "unit_text",
]

#: Deeper trees than this are cut (with a note): real reports are a handful of levels deep,
#: and a malformed file must not exhaust the recursion limit.
MAX_DEPTH = 64

_CSS = """
<style>
.dicomnb-sr {font-family: system-ui, sans-serif; font-size: 13px; line-height: 1.45;}
.dicomnb-sr h3 {margin: 0.2em 0 0.4em 0;}
.dicomnb-sr table.dicomnb-sr-header td {padding: 0 1em 0 0; vertical-align: top;}
.dicomnb-sr table.dicomnb-sr-header td:first-child {color: #555;}
.dicomnb-sr ul {list-style: none; margin: 0; padding-left: 1.2em; border-left: 1px solid #ddd;}
.dicomnb-sr li {margin: 0.15em 0;}
.dicomnb-sr summary {cursor: pointer;}
.dicomnb-sr .dicomnb-sr-rel {color: #888; font-size: 11px; font-variant: small-caps; margin-right: 0.4em;}
.dicomnb-sr .dicomnb-sr-concept {font-weight: 600;}
.dicomnb-sr .dicomnb-sr-container {font-weight: 700;}
.dicomnb-sr .dicomnb-sr-text {white-space: pre-wrap; display: inline-block; vertical-align: top;}
.dicomnb-sr .dicomnb-sr-ref {font-family: monospace; font-size: 12px;}
.dicomnb-sr .dicomnb-sr-in {color: #1a7f37;}
.dicomnb-sr .dicomnb-sr-out {color: #9a6700;}
.dicomnb-sr .dicomnb-sr-note {color: #888; font-style: italic;}
</style>
"""


def is_structured_report(sop_class_uid: str | None) -> bool:
    """True for the SOP classes of structured reports (SR documents, Key Object Selection...)."""
    return bool(sop_class_uid) and str(sop_class_uid).startswith("1.2.840.10008.5.1.4.1.1.88.")


# -- the model -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """A reference from the report to another object (an image, a waveform, another report).

    Attributes
    ----------
    sop_class_uid, sop_instance_uid : str
        Referenced SOP Class UID and Referenced SOP Instance UID.
    frames : tuple of int
        Referenced Frame Numbers (empty: the whole object).
    in_catalog : bool
        Whether the catalog holds that instance (then ``dicomnb.show`` can open it).
    extra : str
        What else the reference says (a presentation state, segments, waveform channels).
    """

    sop_class_uid: str
    sop_instance_uid: str
    frames: tuple[int, ...] = ()
    in_catalog: bool = False
    extra: str = ""

    @property
    def sop_class_name(self) -> str:
        """The SOP class in words ("CT Image Storage"), or its UID when pydicom does not know it."""
        return _uid_name(self.sop_class_uid)


@dataclass
class ContentItem:
    """One content item of the tree.

    Attributes
    ----------
    number : str
        Its position in the tree, ``"1"`` for the root, ``"1.3.2"`` for the second child of
        the root's third child (what a by-reference relationship points at).
    relationship : str
        Relationship Type to its parent (empty for the root).
    value_type : str
        ``TEXT``, ``NUM``, ``CODE``, ``CONTAINER``, ``IMAGE``... (empty for a by-reference item).
    concept : str
        The Code Meaning of its concept name (empty when it has none).
    value : str
        Its value as text: a number with its unit, a code's meaning, a date, coordinates...
    references : tuple of Reference
        The objects it refers to (IMAGE, COMPOSITE, WAVEFORM items).
    target : str
        For a by-reference item, the number of the item it points at.
    children : list of ContentItem
        Its content items.
    """

    number: str
    relationship: str
    value_type: str
    concept: str = ""
    value: str = ""
    references: tuple[Reference, ...] = ()
    target: str = ""
    concept_code: str = ""
    children: list[ContentItem] = field(default_factory=list)

    def walk(self) -> Iterator[ContentItem]:
        """This item and every item below it, depth first in document order."""
        yield self
        for child in self.children:
            yield from child.walk()


# -- values as text --------------------------------------------------------------------------------
def _uid_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name if uid else ""
    return name if name and name != uid else uid


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(v) for v in value)
    return str(value)


def format_date(value: Any) -> str:
    """``20010213`` as ``2001-02-13`` (other text as it is)."""
    text = _text(value).strip()
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def format_time(value: Any) -> str:
    """``184746.5`` as ``18:47:46.5``; ``1847`` as ``18:47`` (other text as it is)."""
    text = _text(value).strip()
    whole, dot, fraction = text.partition(".")
    if not whole.isdigit() or len(whole) not in (2, 4, 6):
        return text
    parts = [whole[i:i + 2] for i in range(0, len(whole), 2)]
    return ":".join(parts) + (dot + fraction if dot else "")


def format_datetime(value: Any) -> str:
    """``20010213184746+0100`` as ``2001-02-13 18:47:46 +0100``."""
    text = _text(value).strip()
    offset = ""
    for sign in "+-":
        if sign in text[4:]:
            cut = text.index(sign, 4)
            text, offset = text[:cut], " " + text[cut:]
            break
    date, time = text[:8], text[8:]
    out = format_date(date) if len(date) == 8 else date
    if time:
        out += " " + format_time(time)
    return out + offset


def format_person_name(value: Any) -> str:
    """A Person Name as ``Family, Given Middle`` (the alphabetic group)."""
    from pydicom.valuerep import PersonName

    name = value if isinstance(value, PersonName) else PersonName(_text(value))
    given = " ".join(p for p in (name.name_prefix, name.given_name, name.middle_name, name.name_suffix) if p)
    words = ", ".join(p for p in (name.family_name, given) if p)
    return words or _text(value).replace("^", " ").strip()


def code_text(item: Any, keyword: str) -> tuple[str, str]:
    """The ``(meaning, "value (scheme)")`` of the first code of the code sequence ``keyword`` of
    ``item``, or empty strings."""
    sequence = item.get(keyword)
    if not sequence:
        return "", ""
    code = sequence[0]
    value = code.get("CodeValue") or code.get("LongCodeValue") or code.get("URNCodeValue") or ""
    scheme = code.get("CodingSchemeDesignator") or ""
    meaning = _text(code.get("CodeMeaning")) or _text(value)
    where = f"{value} ({scheme})" if scheme else _text(value)
    return meaning, where


def unit_text(item: Any, keyword: str = "MeasurementUnitsCodeSequence") -> str:
    """The unit in the code sequence ``keyword`` of ``item``: the UCUM symbol (``mm``), else the
    code's meaning; empty without a unit (or for UCUM's ``1``)."""
    sequence = item.get(keyword)
    if not sequence:
        return ""
    code = sequence[0]
    value = _text(code.get("CodeValue"))
    meaning = _text(code.get("CodeMeaning"))
    if _text(code.get("CodingSchemeDesignator")).upper() == "UCUM" and value:
        # UCUM "1" is "no unit"; "{ratio}"-style annotations read better as words.
        if value == "1":
            return ""
        return meaning if value.startswith("{") else value
    return meaning or value


def _number(item: Any) -> str:
    measured = item.get("MeasuredValueSequence")
    if measured:
        value = measured[0]
        number = _text(value.get("NumericValue")).strip()
        if not number and value.get("FloatingPointValue") is not None:
            number = f"{float(value.FloatingPointValue):g}"
        unit = unit_text(value)
        text = f"{number} {unit}".strip() if number else "(no value)"
    else:
        text = "(no value)"
    qualifier, _ = code_text(item, "NumericValueQualifierCodeSequence")
    if qualifier:
        text = qualifier if text == "(no value)" else f"{text} ({qualifier})"
    return text


def _points(data: Any, dimensions: int) -> str:
    values = [float(v) for v in (data or [])]
    points = [values[i:i + dimensions] for i in range(0, len(values) - dimensions + 1, dimensions)]
    return ", ".join("(" + ", ".join(f"{v:g}" for v in point) + ")" for point in points)


def _scoord(item: Any, dimensions: int) -> str:
    kind = _text(item.get("GraphicType")) or "?"
    text = f"{kind} {_points(item.get('GraphicData'), dimensions)}".strip()
    if dimensions == 3 and item.get("ReferencedFrameOfReferenceUID"):
        text += f" in frame of reference {item.ReferencedFrameOfReferenceUID}"
    elif item.get("PixelOriginInterpretation"):
        text += f" ({_text(item.PixelOriginInterpretation).lower()} pixels)"
    return text


def temporal_text(item: Any) -> str:
    """A TCOORD item or waveform annotation's time range in words ("POINT at 299 samples")."""
    kind = _text(item.get("TemporalRangeType")) or "?"
    for keyword, unit in (("ReferencedSamplePositions", "samples"), ("ReferencedTimeOffsets", "s"),
                          ("ReferencedDateTime", "")):
        if item.get(keyword) is not None:
            raw = item[keyword].value
            values = raw if isinstance(raw, (list, tuple)) or type(raw).__name__ == "MultiValue" else [raw]
            if keyword == "ReferencedDateTime":
                shown = ", ".join(format_datetime(v) for v in values)
            else:
                shown = ", ".join(f"{float(v):g}" for v in values) + f" {unit}"
            return f"{kind} at {shown}"
    return kind


def _frames(value: Any) -> tuple[int, ...]:
    if value is None or value == "":
        return ()
    values = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    return tuple(int(v) for v in values)


def _references(item: Any, in_catalog: Any) -> tuple[Reference, ...]:
    refs = []
    for ref in item.get("ReferencedSOPSequence") or []:
        uid = _text(ref.get("ReferencedSOPInstanceUID"))
        extras = []
        for state in ref.get("ReferencedSOPSequence") or []:  # a presentation state to apply
            extras.append(f"with {_uid_name(_text(state.get('ReferencedSOPClassUID')))} "
                          f"{_text(state.get('ReferencedSOPInstanceUID'))}")
        if ref.get("ReferencedSegmentNumber") is not None:
            extras.append(f"segments {_text(ref.ReferencedSegmentNumber)}")
        if ref.get("ReferencedWaveformChannels") is not None:
            pairs = _frames(ref.ReferencedWaveformChannels)  # (multiplex group, channel) pairs
            extras.append("channels " + ", ".join(f"{pairs[i]}:{pairs[i + 1]}" for i in range(0, len(pairs) - 1, 2)))
        refs.append(Reference(_text(ref.get("ReferencedSOPClassUID")), uid,
                              _frames(ref.get("ReferencedFrameNumber")), bool(uid) and in_catalog(uid),
                              "; ".join(extras)))
    return tuple(refs)


def _value(item: Any, value_type: str) -> str:
    if value_type == "TEXT":
        return _text(item.get("TextValue")).replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")
    if value_type == "NUM":
        return _number(item)
    if value_type == "CODE":
        return code_text(item, "ConceptCodeSequence")[0]
    if value_type == "DATE":
        return format_date(item.get("Date"))
    if value_type == "TIME":
        return format_time(item.get("Time"))
    if value_type == "DATETIME":
        return format_datetime(item.get("DateTime"))
    if value_type == "PNAME":
        return format_person_name(item.get("PersonName")) if item.get("PersonName") else ""
    if value_type == "UIDREF":
        uid = _text(item.get("UID"))
        name = _uid_name(uid)
        return f"{uid} ({name})" if name != uid else uid
    if value_type == "SCOORD":
        return _scoord(item, 2)
    if value_type == "SCOORD3D":
        return _scoord(item, 3)
    if value_type == "TCOORD":
        return temporal_text(item)
    if value_type in ("CONTAINER", "IMAGE", "COMPOSITE", "WAVEFORM", ""):
        return ""
    return f"({value_type.lower()} value, not shown here)"


def parse_tree(ds: Any, in_catalog: Any = None) -> ContentItem:
    """Parse the content tree of a structured report.

    Parameters
    ----------
    ds : pydicom.Dataset
        The report (its root content item is the dataset itself).
    in_catalog : callable, optional
        ``in_catalog(sop_instance_uid) -> bool``; by default, the process catalog is asked.

    Raises
    ------
    InputError
        The dataset is not a structured report.
    """
    if "ValueType" not in ds and "ContentSequence" not in ds:
        raise InputError(f"not a structured report: no content tree "
                         f"(SOP class {_uid_name(_text(ds.get('SOPClassUID')))})")
    if in_catalog is None:
        from dicomnb.api import catalog

        def in_catalog(uid: str) -> bool:
            return uid in catalog

    return _item(ds, "1", "", in_catalog, 0)


def _item(item: Any, number: str, relationship: str, in_catalog: Any, depth: int) -> ContentItem:
    value_type = _text(item.get("ValueType")).upper()
    concept, concept_code = code_text(item, "ConceptNameCodeSequence")
    target = ""
    if not value_type and item.get("ReferencedContentItemIdentifier") is not None:
        target = ".".join(str(int(v)) for v in _frames(item.ReferencedContentItemIdentifier))
    node = ContentItem(number, relationship, value_type, concept, _value(item, value_type),
                       _references(item, in_catalog), target, concept_code)
    children = item.get("ContentSequence") or []
    if depth >= MAX_DEPTH and children:
        node.children.append(ContentItem(f"{number}.1", "", "NOTE", value=f"{len(children)} items deeper "
                                         f"than {MAX_DEPTH} levels, not shown"))
        return node
    for index, child in enumerate(children, start=1):
        node.children.append(_item(child, f"{number}.{index}", _text(child.get("RelationshipType")),
                                   in_catalog, depth + 1))
    return node


# -- the view --------------------------------------------------------------------------------------
class SrView(View):
    """A structured report (Basic Text, Enhanced, Comprehensive SR, Key Object Selection...).

    Parameters
    ----------
    source : InstanceRecord, str, path or pydicom.Dataset
        The report: a record of the catalog, a file's path or a dataset already read.
    title : str
        The view's one-line title (default: the document title and the patient).

    Attributes
    ----------
    dataset : pydicom.Dataset
        The report.
    document : ContentItem
        The root of the content tree.
    references : list of Reference
        Every object the report refers to, in document order.

    Raises
    ------
    InputError
        The source is not a structured report (or cannot be read).
    """

    kind = "sr"

    def __init__(self, source: InstanceRecord | str | os.PathLike[str] | Any, *, title: str = "") -> None:
        self.dataset = read_dataset(source)
        self.document = parse_tree(self.dataset)
        self.references = [ref for item in self.document.walk() for ref in item.references]
        ds = self.dataset
        name = format_person_name(ds.PatientName) if ds.get("PatientName") else ""
        super().__init__(title or " · ".join(p for p in (self.document.concept or "Structured report", name) if p))
        # Anchors must not clash between two reports shown in one notebook.
        self._anchor = f"sr{zlib.crc32(_text(ds.get('SOPInstanceUID')).encode()) & 0xFFFFFF:06x}"
        self._numbers = {item.number: item for item in self.document.walk()}

    # -- the header ------------------------------------------------------------------------------
    def header(self) -> list[tuple[str, str]]:
        """The document's header as ``(label, text)`` rows: patient, dates, flags, observers."""
        ds = self.dataset
        rows: list[tuple[str, str]] = []

        def add(label: str, value: str) -> None:
            if value:
                rows.append((label, value))

        add("Patient", " ".join(p for p in (format_person_name(ds.PatientName) if ds.get("PatientName") else "",
                                            f"({ds.PatientID})" if ds.get("PatientID") else "") if p))
        add("Study", " ".join(p for p in (_text(ds.get("StudyDescription")), format_date(ds.get("StudyDate")))
                              if p))
        add("Series", _text(ds.get("SeriesDescription")))
        add("Document", _uid_name(_text(ds.get("SOPClassUID"))))
        templates = [f"TID {t.TemplateIdentifier}" + (f" ({t.MappingResource})" if t.get("MappingResource") else "")
                     for t in ds.get("ContentTemplateSequence") or [] if t.get("TemplateIdentifier")]
        add("Template", ", ".join(templates))
        add("Content date", format_datetime(f"{_text(ds.get('ContentDate'))}{_text(ds.get('ContentTime'))}"))
        add("Observation", format_datetime(ds.get("ObservationDateTime")))
        completion = _text(ds.get("CompletionFlag"))
        if ds.get("CompletionFlagDescription"):
            completion += f": {ds.CompletionFlagDescription}"
        add("Completion", completion)
        add("Verification", _text(ds.get("VerificationFlag")))
        add("Preliminary", _text(ds.get("PreliminaryFlag")))
        for observer in ds.get("VerifyingObserverSequence") or []:
            words = format_person_name(observer.VerifyingObserverName) if observer.get("VerifyingObserverName") else ""
            details = [p for p in (_text(observer.get("VerifyingOrganization")),
                                   format_datetime(observer.get("VerificationDateTime"))) if p]
            add("Verified by", words + (f" ({', '.join(details)})" if details else ""))
        for author in ds.get("AuthorObserverSequence") or []:
            kind = _text(author.get("ObserverType"))
            who = format_person_name(author.PersonName) if author.get("PersonName") else _text(
                author.get("DeviceObserverName") or author.get("DeviceObserverUID"))
            add("Author", " ".join(p for p in (who, f"({kind.lower()})" if kind else "") if p))
        for participant in ds.get("ParticipantSequence") or []:
            who = format_person_name(participant.PersonName) if participant.get("PersonName") else _text(
                participant.get("DeviceObserverName"))
            add("Participant", " ".join(p for p in (who, f"({_text(participant.get('ParticipationType')).lower()})")
                                        if p and p != "()"))
        return rows

    # -- text and HTML -----------------------------------------------------------------------------
    def text(self) -> str:
        """The content tree as an indented plain-text outline (one line per item)."""
        lines: list[str] = []

        def add(item: ContentItem, depth: int) -> None:
            parts = [f"[{item.relationship}]" if item.relationship else "", item.concept + ":" if item.concept else ""]
            parts.append(item.value.replace("\n", " / "))
            parts += [f"{ref.sop_class_name} {ref.sop_instance_uid}" for ref in item.references]
            if item.target:
                parts.append(f"-> {item.target}")
            lines.append("  " * depth + " ".join(p for p in parts if p))
            for child in item.children:
                add(child, depth + 1)

        add(self.document, 0)
        return "\n".join(lines)

    def _id(self, number: str) -> str:
        return f"{self._anchor}-{number.replace('.', '-')}"

    def _reference_html(self, ref: Reference) -> str:
        where = ("<span class='dicomnb-sr-in' title='in the catalog: dicomnb.show can open it'>in catalog</span>"
                 if ref.in_catalog else
                 "<span class='dicomnb-sr-out' title='not in the catalog: import it to open it'>not in catalog</span>")
        frames = f", frames {', '.join(map(str, ref.frames))}" if ref.frames else ""
        extra = f"; {html.escape(ref.extra)}" if ref.extra else ""
        return (f"{html.escape(ref.sop_class_name)} <span class='dicomnb-sr-ref'>"
                f"{html.escape(ref.sop_instance_uid)}</span> ({where}{frames}{extra})")

    def _item_line(self, item: ContentItem) -> str:
        parts = []
        if item.relationship:
            parts.append(f"<span class='dicomnb-sr-rel'>{html.escape(item.relationship.lower())}</span>")
        css = "dicomnb-sr-container" if item.value_type == "CONTAINER" else "dicomnb-sr-concept"
        if item.concept:
            title = f" title='{html.escape(item.concept_code, quote=True)}'" if item.concept_code else ""
            colon = "" if item.value_type == "CONTAINER" else ":"
            parts.append(f"<span class='{css}'{title}>{html.escape(item.concept)}</span>{colon}")
        if item.value:
            css = "dicomnb-sr-note" if item.value_type == "NOTE" else "dicomnb-sr-text"
            parts.append(f"<span class='{css}'>{html.escape(item.value)}</span>")
        for ref in item.references:
            parts.append(self._reference_html(ref))
        if item.target:
            pointed = self._numbers.get(item.target)
            label = f"item {item.target}" + (f" ({pointed.concept})" if pointed and pointed.concept else "")
            parts.append(f"<a href='#{self._id(item.target)}'>see {html.escape(label)}</a>")
        if not item.concept and not item.value and not item.references and not item.target:
            parts.append(f"<span class='dicomnb-sr-note'>{html.escape(item.value_type.lower() or 'item')}</span>")
        return " ".join(parts)

    def _item_html(self, item: ContentItem) -> str:
        line = self._item_line(item)
        anchor = f" id='{self._id(item.number)}'"
        if not item.children:
            return f"<li{anchor}>{line}</li>"
        children = "".join(self._item_html(child) for child in item.children)
        return f"<li{anchor}><details open><summary>{line}</summary><ul>{children}</ul></details></li>"

    def html(self) -> str:
        """The report as an HTML document: header table, then the collapsible content tree."""
        title = html.escape(self.document.concept or "Structured report")
        rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>"
                       for label, value in self.header())
        missing = sum(1 for ref in self.references if not ref.in_catalog)
        note = ""
        if self.references:
            note = (f"<div class='dicomnb-sr-note'>{len(self.references)} referenced object(s), "
                    f"{missing} not in the catalog</div>")
        root = self.document
        if root.children:
            items = "".join(self._item_html(child) for child in root.children)
            tree = f"<ul class='dicomnb-sr-tree' id='{self._id(root.number)}'>{items}</ul>"
        else:
            tree = "<div class='dicomnb-sr-note'>the report has no content items</div>"
        return (f"{_CSS}<div class='dicomnb-sr'><h3>{title}</h3>"
                f"<table class='dicomnb-sr-header'>{rows}</table>{note}{tree}</div>")
