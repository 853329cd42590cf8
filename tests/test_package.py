"""The package's shape: exported names, the house's layering, the error tree."""

from __future__ import annotations

import subprocess
import sys

import dicomnb
import dicomnb.core.errors
import dicomnb.errors


def test_all_is_sorted_and_complete() -> None:
    public = sorted(name for name in dir(dicomnb) if not name.startswith("_")
                    and not isinstance(getattr(dicomnb, name), type(sys)))
    assert dicomnb.__all__ == sorted(dicomnb.__all__), "keep __all__ sorted"
    assert len(set(dicomnb.__all__)) == len(dicomnb.__all__)
    assert set(public) - {"annotations", "logging"} <= set(dicomnb.__all__) | {"api", "cli", "core", "sources"}
    for name in dicomnb.__all__:
        assert hasattr(dicomnb, name), name


def test_core_imports_no_widget_plotting_or_network_library() -> None:
    code = (
        "import sys, dicomnb, dicomnb.core.catalog, dicomnb.core.scan, dicomnb.core.volume;"
        "import dicomnb.sources.local, dicomnb.sources.ziparchive, dicomnb.sources.dicomdir;"
        "bad = [m for m in ('ipywidgets', 'matplotlib', 'pynetdicom', 'dicomweb_client', 'requests',"
        " 'httpx', 'urllib3', 'IPython') if m in sys.modules]; print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_error_tree() -> None:
    e = dicomnb.errors
    assert issubclass(e.PasswordRequired, e.ArchiveError) and issubclass(e.WrongPassword, e.ArchiveError)
    assert issubclass(e.ArchiveError, e.InputError) and issubclass(e.InputError, e.DicomnbError)
    assert issubclass(e.TruncatedFileError, e.UnreadableFileError)
    for name in ["NotDicomError", "UnsafePathError", "DicomdirError", "DropRejected", "SourceError",
                 "DownloadError"]:
        assert issubclass(getattr(e, name), e.DicomnbError)
    assert issubclass(e.ConfigError, e.InputError) and issubclass(e.CriteriaError, e.InputError)
    for name in ["ConnectionFailed", "AssociationRejected", "AssociationAborted", "QueryFailed",
                 "RetrieveIncomplete"]:
        assert issubclass(getattr(e, name), e.SourceError), name
        assert name in (dicomnb.core.errors.__doc__ or ""), f"{name} missing from the drawn tree"
    assert issubclass(e.DependencyMissing, e.DicomnbError) and issubclass(e.DependencyMissing, ImportError)
    assert e.QueryFailed("x", status=0xC000).status == 0xC000
    assert e.RetrieveIncomplete("x", missing=("1.2",)).missing == ("1.2",)
    assert sorted(e.__all__) == e.__all__


def test_settings_are_validated() -> None:
    import pytest

    with pytest.raises(ValueError, match="whole number"):
        dicomnb.settings.workers = 0
    with pytest.raises(AttributeError, match="no option"):
        dicomnb.settings.colour = "blue"  # type: ignore[attr-defined]
    with dicomnb.settings.override(workers=1):
        assert dicomnb.settings.workers == 1
    assert dicomnb.settings.workers >= 1
