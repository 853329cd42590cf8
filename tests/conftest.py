"""Shared fixtures: pydicom's bundled files as real data, an isolated cache and catalog."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import NoReturn

import pydicom
import pytest

from dicomnb.core.catalog import Catalog
from dicomnb.core.settings import settings

PYDICOM_DATA = Path(pydicom.__file__).parent / "data"
TEST_FILES = PYDICOM_DATA / "test_files"
CHARSET_FILES = PYDICOM_DATA / "charset_files"


def in_ci() -> bool:
    """True on CI, where a missing peer (dcmtk, Orthanc, Chromium) must fail, not skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_peer(message: str) -> NoReturn:
    """Stop a test whose peer is missing: skip it here, fail it on CI."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """Return the path of a system command-line tool; skip without it, but fail on CI."""
    from peers import system_tool

    path = system_tool(name)
    if path is None:
        message = f"{name} is not installed (the test command installs it: scripts/test.sh)"
        missing_peer(message)
    return path


def tree_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file below ``root`` (to prove a source was not modified)."""
    hashes = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and not path.is_symlink():
            hashes[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


@pytest.fixture
def test_files() -> Path:
    """pydicom's bundled test files (read-only: copy before changing anything)."""
    return TEST_FILES


@pytest.fixture
def charset_files() -> Path:
    return CHARSET_FILES


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own cache folder and an empty process catalog."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("DICOMNB_CACHE_DIR", str(cache))
    import dicomnb

    with settings.override(cache_dir=cache):
        dicomnb.catalog.clear()
        yield cache
        dicomnb.catalog.clear()


@pytest.fixture
def catalog() -> Catalog:
    """A fresh catalog of its own (not the process-wide one)."""
    return Catalog()


@pytest.fixture
def sample_tree(tmp_path: Path) -> Path:
    """A folder with a few real DICOM files, some without extension, an image and junk."""
    root = tmp_path / "sample"
    (root / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(TEST_FILES / "CT_small.dcm", root / "CT_small.dcm")
    shutil.copy(TEST_FILES / "MR_small.dcm", root / "sub" / "MRSMALL")  # no extension
    shutil.copy(TEST_FILES / "rtplan.dcm", root / "sub" / "deeper" / "plan.IMA")
    shutil.copy(TEST_FILES / "ExplVR_LitEndNoMeta.dcm", root / "sub" / "raw.bin")  # no preamble
    (root / "notes.txt").write_text("not DICOM\n")
    (root / "photo.png").write_bytes(
        bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                      "0000000d49444154789c6360000002000154a24f5f0000000049454e44ae426082"))
    return root


# --- Real DICOM peers, started once per session (see tests/peers.py) ---------------------------

def require_module(name: str, extra: str = "network") -> None:
    """Skip without the Python module ``name``, but fail on CI (like :func:`require_tool`)."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        message = f"{name} is not installed (pip install -e '.[{extra}]'; scripts/test.sh does)"
        missing_peer(message)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    """Orthanc with the DICOMweb plugin, loaded with :data:`peers.DATASET`."""
    import peers

    require_tool("Orthanc")
    require_module("pynetdicom")
    if not peers.ORTHANC_PLUGIN.exists():
        message = f"the DICOMweb plugin {peers.ORTHANC_PLUGIN} is missing (apt-get install orthanc-dicomweb)"
        missing_peer(message)
    with peers.run_orthanc(tmp_path_factory.mktemp("orthanc")) as peer:
        yield peer


@pytest.fixture(scope="session")
def dcmqrscp(tmp_path_factory: pytest.TempPathFactory):
    """DCMTK's dcmqrscp (the strict peer), loaded with :data:`peers.DATASET`."""
    import peers

    require_tool("dcmqrscp")
    require_module("pynetdicom")
    with peers.run_dcmqrscp(tmp_path_factory.mktemp("dcmqrscp")) as peer:
        yield peer


@pytest.fixture(scope="session")
def qrscp(tmp_path_factory: pytest.TempPathFactory):
    """pynetdicom's qrscp (the embedded demo archive), loaded with :data:`peers.DATASET`."""
    import peers

    require_module("pynetdicom")
    require_module("sqlalchemy")
    with peers.run_qrscp(tmp_path_factory.mktemp("qrscp")) as peer:
        yield peer


@pytest.fixture
def silent_peer():
    """A TCP peer that accepts connections and never answers (for timeouts)."""
    import peers

    with peers.SilentPeer() as peer:
        yield peer


@pytest.fixture
def hang_up_peer():
    """A TCP peer that accepts connections and closes them at once."""
    import peers

    with peers.SilentPeer(hang_up=True) as peer:
        yield peer


@pytest.fixture(autouse=True)
def isolated_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own configuration folder (nodes, presets): the user's is never touched."""
    folder = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("DICOMNB_CONFIG_DIR", str(folder))
    return folder
