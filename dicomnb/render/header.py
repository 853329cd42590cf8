"""The header of a DICOM object as a table: the view of objects no other viewer draws
(RT plans and structure sets, key object selections, presentation states, raw data ...).

Sequences are nested tables folded in ``<details>``; long values are cut; bulk data (pixel
data, waveforms, documents) is shown by its length only.
"""

from __future__ import annotations

import html
from typing import Any

from dicomnb.render.base import View

__all__ = ["HeaderView", "header_html"]

#: Characters of one value shown before it is cut.
VALUE_CHARS = 200
#: Items of one sequence shown (the rest are counted).
SEQUENCE_ITEMS = 50
#: Elements shown in all (a header larger than this is cut, and says so).
MAX_ELEMENTS = 5000

_BULK_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})


def _value(element: Any) -> str:
    if element.VR in _BULK_VRS:
        length = len(element.value) if element.value is not None else 0
        return f"({length:,} bytes)"
    text = str(element.value) if element.value is not None else ""
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + f"… ({len(text):,} characters)"


def header_html(ds: Any, *, open_depth: int = 0) -> str:
    """The dataset ``ds`` as nested HTML tables (tag, name, VR, value)."""
    shown = [0]

    def table(dataset: Any, depth: int) -> str:
        rows = []
        for element in dataset:
            if shown[0] >= MAX_ELEMENTS:
                rows.append(f"<tr><td colspan='4'><i>… cut after {MAX_ELEMENTS:,} elements</i></td></tr>")
                break
            shown[0] += 1
            tag = f"({element.tag.group:04X},{element.tag.element:04X})"
            name = html.escape(element.name)
            if element.VR == "SQ":
                items = list(element.value or [])
                inner = "".join(
                    f"<div><i>item {i + 1}</i>{table(item, depth + 1)}</div>" for i, item in enumerate(items[:SEQUENCE_ITEMS]))
                if len(items) > SEQUENCE_ITEMS:
                    inner += f"<div><i>… and {len(items) - SEQUENCE_ITEMS} more items</i></div>"
                opened = " open" if depth < open_depth else ""
                value = f"<details{opened}><summary>{len(items)} item{'s' if len(items) != 1 else ''}</summary>{inner}</details>"
            else:
                value = html.escape(_value(element))
            rows.append(f"<tr><td><code>{tag}</code></td><td>{name}</td><td>{element.VR}</td><td>{value}</td></tr>")
        return ("<table class='dicomnb-header-table' style='border-collapse:collapse;font-size:90%'>"
                + "".join(rows) + "</table>")

    meta = getattr(ds, "file_meta", None)
    parts = []
    if meta is not None and len(meta):
        parts.append("<details><summary>File meta information</summary>" + table(meta, 1) + "</details>")
    parts.append(table(ds, 0))
    return "".join(parts)


class HeaderView(View):
    """The header of one DICOM object (``source``: a record, a path or a dataset)."""

    kind = "header"

    def __init__(self, source: Any, *, title: str = "") -> None:
        from dicomnb.core.volume import read_dataset

        super().__init__(title)
        self.dataset = read_dataset(source, stop_before_pixels=True)

    def html(self) -> str:
        ds = self.dataset
        sop = ds.get("SOPClassUID")
        what = getattr(sop, "name", None) or str(sop or "DICOM object")
        head = html.escape(self.title or what)
        return (f"<div class='dicomnb-header-view'><div><b>{head}</b> — {html.escape(what)}: "
                "no image to draw; its header:</div>"
                f"<div style='max-height:32em;overflow:auto'>{header_html(ds)}</div></div>")
