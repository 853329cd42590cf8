"""DICOM JSON (PS3.18 F.2), as QIDO-RS answers: datasets streamed from a body, rows from datasets.

A row is what a C-FIND row is (:mod:`dicomnb.core.query`): DICOM keyword → value, ``str``,
``int`` for integer VRs (IS, US...), ``float`` for decimals (DS, FD...), names in their
``Alphabetic=Ideographic=Phonetic`` string form (``Family^Given``), a list for a
multi-valued attribute and always for :data:`~dicomnb.core.query.LIST_COLUMNS`, a list of
rows for a sequence (even of one item), ``None`` for an attribute returned empty (or as bulk data).

:func:`datasets` reads a JSON array of datasets as it arrives and yields each one as soon
as it is whole, so a search shows its first rows before the answer is complete and a
cancel keeps what had arrived.
"""

from __future__ import annotations

import codecs
import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

from dicomnb.core.errors import MalformedResponse
from dicomnb.core.query import LIST_COLUMNS

__all__ = ["charsets", "datasets", "row"]

_NOT_IN_ROWS = frozenset({"SpecificCharacterSet", "QueryRetrieveLevel"})
_INTEGER_VRS = frozenset({"IS", "SL", "SS", "UL", "US", "SV", "UV"})
_FLOAT_VRS = frozenset({"DS", "FL", "FD"})


@functools.lru_cache(maxsize=2048)
def _keyword(tag: str) -> str:
    from pydicom.datadict import keyword_for_tag

    try:
        return keyword_for_tag(int(tag, 16)) or ""
    except ValueError:
        return ""


def _person_name(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return None
    groups = [str(value.get(name) or "") for name in ("Alphabetic", "Ideographic", "Phonetic")]
    return "=".join(groups).rstrip("=") or None


def _scalar(vr: str, value: Any) -> Any:
    if value is None:
        return None
    if vr == "PN":
        return _person_name(value)
    if vr == "SQ":
        return row(value) if isinstance(value, dict) else None
    if vr in _INTEGER_VRS:
        try:
            return int(value)
        except (TypeError, ValueError):
            return str(value)
    if vr in _FLOAT_VRS:
        try:
            return float(value)
        except (TypeError, ValueError):
            return str(value)
    return value if isinstance(value, (str, int, float)) else str(value)


def row(dataset: dict[str, Any]) -> dict[str, Any]:
    """A DICOM JSON dataset as a row: keyword → value, as C-FIND rows are."""
    found: dict[str, Any] = {}
    for tag, element in dataset.items():
        keyword = _keyword(tag)
        if not keyword or keyword in _NOT_IN_ROWS or not isinstance(element, dict):
            continue
        values = element.get("Value")
        if not isinstance(values, list) or not values:
            found[keyword] = [] if keyword in LIST_COLUMNS else None  # empty, or bulk data
            continue
        vr = str(element.get("vr", ""))
        converted = [_scalar(vr, v) for v in values]
        if keyword in LIST_COLUMNS or vr == "SQ":  # a sequence is a list, even of one item
            found[keyword] = [v for v in converted if v is not None]
        else:
            found[keyword] = converted[0] if len(converted) == 1 else converted
    return found


def charsets(dataset: dict[str, Any]) -> list[str] | None:
    """The SpecificCharacterSet a dataset declares (None: none)."""
    element = dataset.get("00080005")
    values = element.get("Value") if isinstance(element, dict) else None
    return [str(v or "") for v in values] if isinstance(values, list) and values else None


def datasets(read: Callable[[int], bytes], where: str) -> Iterator[dict[str, Any]]:
    """The datasets of a JSON array read with ``read(n)`` (b"" at the end), each once it is whole.

    Raises
    ------
    MalformedResponse
        Not a JSON array of objects, or cut short.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    parser = json.JSONDecoder()
    text = ""          # what has arrived and is not consumed yet
    arrived: list[str] = []
    waiting = 0        # characters in ``arrived``
    started = False    # the "[" has been read
    finished = False   # the "]" has been read
    tried_at = -1      # length of ``text`` when an object last failed to decode (incomplete)
    ended = False
    while not ended:
        chunk = read(65536)
        ended = not chunk
        piece = decoder.decode(chunk, final=ended)
        arrived.append(piece)
        waiting += len(piece)
        # An incomplete object is decoded again only once the text has doubled (or at the
        # end): one arriving in many pieces is joined and parsed a bounded number of times.
        if not ended and 0 <= tried_at and len(text) + waiting < 2 * tried_at:
            continue
        text += "".join(arrived)
        arrived, waiting = [], 0
        position = 0
        while not finished:
            # Blanks, and commas between datasets, separate; strictness would gain nothing.
            while position < len(text) and (text[position] in " \t\r\n" or (started and text[position] == ",")):
                position += 1
            if position >= len(text):
                break
            if not started:
                if text[position] != "[":
                    raise MalformedResponse(f"{where}: the search answer is not a JSON list of datasets: "
                                            "is the node's URL the DICOMweb root?")
                started, position = True, position + 1
                continue
            if text[position] == "]":
                finished, position = True, position + 1
                break
            try:
                dataset, end = parser.raw_decode(text, position)
            except json.JSONDecodeError:
                if ended:
                    raise MalformedResponse(f"{where}: the search answer is cut short or is not JSON") from None
                tried_at = len(text) - position
                break
            tried_at = -1
            position = end
            if not isinstance(dataset, dict):
                raise MalformedResponse(f"{where}: the search answer holds a {type(dataset).__name__}, "
                                        "not a dataset")
            yield dataset
        text = text[position:]
    if started and not finished:
        raise MalformedResponse(f"{where}: the search answer was cut short")
    if text.strip():
        raise MalformedResponse(f"{where}: the search answer has text after its list")
