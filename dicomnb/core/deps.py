"""Optional dependencies: imported when a feature needs them, with an error naming the extra.

>>> pynetdicom = import_optional_dependency("pynetdicom", "network")
"""

from __future__ import annotations

import importlib
from types import ModuleType

from dicomnb.core.errors import DependencyMissing

__all__ = ["import_optional_dependency"]


def import_optional_dependency(name: str, extra: str) -> ModuleType:
    """Import and return the module ``name``, or say which extra of dicomnb provides it.

    Parameters
    ----------
    name : str
        The module to import (``"pynetdicom"``, ``"dicomweb_client"``).
    extra : str
        The extra of dicomnb that installs it (``"network"``).

    Raises
    ------
    DependencyMissing
        The module is not installed (also an :class:`ImportError`).
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise DependencyMissing(
            f"{name} is needed for this and is not installed: pip install 'dicomnb[{extra}]'"
        ) from exc
