"""One contract, every source: what the catalog may rely on, whatever the source."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import TEST_FILES, tree_hashes

from dicomnb.core.archive import read_instance
from dicomnb.core.catalog import Catalog
from dicomnb.core.model import (
    AttachmentRecord,
    ErrorRecord,
    ImageRecord,
    InstanceRecord,
    MissingRecord,
    SkippedRecord,
)
from dicomnb.core.scan import read_header, read_header_bytes
from dicomnb.sources import Source
from dicomnb.sources.dicomdir import DicomdirSource
from dicomnb.sources.local import LocalSource
from dicomnb.sources.ziparchive import ZipSource

ITEM_TYPES = (InstanceRecord, ImageRecord, AttachmentRecord, MissingRecord, ErrorRecord, SkippedRecord)


def _cut(path: Path) -> None:
    """Cut a DICOM file inside its header, as an interrupted copy would."""
    path.write_bytes(path.read_bytes()[:600])


@pytest.fixture(params=["local", "zip", "dicomdir"])
def case(request: pytest.FixtureRequest, tmp_path: Path, sample_tree: Path) -> tuple[Source, Path, int]:
    """A source over real files with one bad file in it; the folder to hash; instances expected."""
    if request.param == "local":
        shutil.copy(TEST_FILES / "CT_small.dcm", sample_tree / "cut.dcm")
        _cut(sample_tree / "cut.dcm")
        return LocalSource(sample_tree), sample_tree, 4
    if request.param == "zip":
        shutil.copy(TEST_FILES / "CT_small.dcm", sample_tree / "cut.dcm")
        _cut(sample_tree / "cut.dcm")
        folder = tmp_path / "archive"
        folder.mkdir()
        with zipfile.ZipFile(folder / "study.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(sample_tree.rglob("*")):
                zf.write(path, path.relative_to(sample_tree).as_posix())
        return ZipSource(str(folder / "study.zip")), folder, 4
    media = tmp_path / "cd"
    shutil.copytree(TEST_FILES / "dicomdirtests", media)
    _cut(media / "77654033" / "CR1" / "6154")
    return DicomdirSource(str(media)), media, 30


def test_source_contract(case: tuple[Source, Path, int]) -> None:
    source, root, expected = case
    before = tree_hashes(root)
    assert isinstance(source, Source)
    assert isinstance(source.kind, str) and source.kind and isinstance(source.origin, str)

    items = list(source.items())
    assert all(isinstance(item, ITEM_TYPES) for item in items)
    instances = [i for i in items if isinstance(i, InstanceRecord)]
    assert len({i.SOPInstanceUID for i in instances}) == expected
    for record in instances:
        assert record.source == source.kind and record.origin == source.origin
        assert os.path.isabs(record.path) and os.path.isfile(record.path)
        where = read_instance(record)  # the file, or the entry of the archive it stays in
        fields = read_header(where) if isinstance(where, str) else read_header_bytes(where.getvalue())
        assert fields["SOPInstanceUID"] == record.SOPInstanceUID
    # the bad file is reported, typed, and did not stop the rest
    problems = [i for i in items if isinstance(i, (ErrorRecord, MissingRecord))]
    assert problems
    errors = [i for i in items if isinstance(i, ErrorRecord)]
    assert all(e.error.endswith("Error") or e.error in {"WrongPassword", "PasswordRequired"} for e in errors)

    catalog = Catalog()
    first = catalog.ingest(source)
    second = catalog.ingest(source)
    assert first.added == expected and second.added == 0 and len(catalog) == expected
    assert tree_hashes(root) == before  # the source is never modified
