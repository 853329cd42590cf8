"""Sources of DICOM data, each behind the one :class:`Source` protocol.

A source yields items (:data:`dicomnb.core.model.Item`) one by one; the catalog files
them. A source never raises for one bad file: the error is an item. It raises only when
it cannot start at all (an archive that needs a password, a DICOMDIR that cannot be read).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from dicomnb.core.model import Item

__all__ = ["Source"]


@runtime_checkable
class Source(Protocol):
    """Something that yields catalog items.

    Attributes
    ----------
    kind : str
        The kind of source, the catalog's ``source`` column (``"local"``, ``"zip"``, ...).
    origin : str
        What the user named (a folder, an archive, a DICOMDIR), the ``origin`` column.
    """

    kind: str
    origin: str

    def items(self) -> Iterator[Item]:
        """Yield the items of this source (instances, images, errors, ...)."""
        ...
