"""dicomnb: a DICOM viewer's import capability in Jupyter.

Import local files and folders, DICOM ZIPs and DICOMDIR media into one catalog, then
explore it as pandas DataFrames and read series as numpy volumes::

    import dicomnb
    report = dicomnb.import_local("path/to/folder")
    dicomnb.catalog.studies
"""

from __future__ import annotations

import logging
import typing

from dicomnb import errors
from dicomnb.api import (
    catalog,
    get,
    import_dicomdir,
    import_local,
    import_zip,
    load_series,
    sample_data,
)
from dicomnb.core.criteria import Period, SearchCriteria
from dicomnb.core.drop import DropPlan, check_drop, import_drop
from dicomnb.core.nodes import DicomNode, DicomWebNode
from dicomnb.core.query import QueryResult
from dicomnb.core.report import ImportReport
from dicomnb.core.retrieval import RetrieveResult
from dicomnb.core.settings import settings
from dicomnb.core.volume import Volume, load_volume
from dicomnb.manifests import retrieve_manifest
from dicomnb.network import (
    add_node,
    echo,
    find_instances,
    forget_secret,
    get_node,
    nodes,
    presets,
    query,
    remove_node,
    set_secret,
)
from dicomnb.render.show import show
from dicomnb.retrieving import downloads, retrieve
from dicomnb.runner import open_uri, run
from dicomnb.sources.dicomdir import detect_cdrom

__version__ = "0.1.0"

__all__ = [
    "DicomNode",
    "DicomWebNode",
    "DropPlan",
    "ImportReport",
    "Period",
    "QueryResult",
    "RetrieveResult",
    "SearchCriteria",
    "Volume",
    "__version__",
    "add_node",
    "catalog",
    "check_drop",
    "debug_logger",
    "demo",
    "detect_cdrom",
    "dialog",
    "downloads",
    "echo",
    "errors",
    "find_instances",
    "forget_secret",
    "get",
    "get_node",
    "import_dicomdir",
    "import_drop",
    "import_local",
    "import_zip",
    "load_series",
    "load_volume",
    "nodes",
    "open_uri",
    "presets",
    "query",
    "remove_node",
    "retrieve",
    "retrieve_manifest",
    "run",
    "sample_data",
    "set_secret",
    "settings",
    "show",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


# dicomnb.demo (the demo archive, a callable module) is imported when first used: importing it
# here would make `python -m dicomnb.demo` warn that it had been imported before it ran.
if typing.TYPE_CHECKING:
    from dicomnb import demo
else:

    def __getattr__(name: str) -> object:
        if name == "demo":
            import importlib

            return importlib.import_module("dicomnb.demo")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def debug_logger() -> None:
    """Send dicomnb's log messages, debug level included, to standard error."""
    logger = logging.getLogger(__name__)
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname).1s %(name)s: %(message)s"))
    logger.addHandler(handler)


def dialog(*, display: bool = True) -> typing.Any:
    """Open the import dialog (ipywidgets) in the notebook, and return it.

    Tabs ``Local``, ``ZIP``, ``DICOMDIR``, ``Drop`` and ``Query/Retrieve``; under them the
    alert, the download panel and the explorer of the catalog. Every action is also a plain
    call (``d.local.import_()``, ``d.query.search()``...). See
    :class:`dicomnb.widgets.dialog.ImportDialog`. Needs ``pip install 'dicomnb[notebook]'``.
    """
    from dicomnb.widgets.dialog import dialog as open_dialog

    return open_dialog(display=display)
