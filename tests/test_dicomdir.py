"""DICOMDIR media: real DICOMDIRs (pydicom's, dcmtk's) and hostile ones built from them."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pydicom
import pytest
from conftest import require_tool, tree_hashes
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet

import dicomnb
from dicomnb.cli import main
from dicomnb.core.model import SkippedRecord
from dicomnb.errors import DicomdirError
from dicomnb.sources.dicomdir import DicomdirSource, detect_cdrom, find_dicomdir, is_dicomdir_file

KEYS = ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]


@pytest.fixture
def media(tmp_path: Path, test_files: Path) -> Path:
    """A copy of pydicom's DICOMDIR test media: 31 images referenced, TINY_ALPHA and variants beside."""
    root = tmp_path / "cd"
    shutil.copytree(test_files / "dicomdirtests", root)
    return root


def lower_case_tree(root: Path) -> None:
    """Rename every file and folder below ``root`` to lower case, as some CD mounts show them."""
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in dirs + files:
            os.rename(os.path.join(folder, name), os.path.join(folder, name.lower()))


def read_dicomdir(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def write_dicomdir(ds: Dataset, path: Path) -> None:
    """Save an edited DICOMDIR with its record offsets updated to the new record positions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = [item.seq_item_tell for item in ds.DirectoryRecordSequence]
        buffer = io.BytesIO()
        ds.save_as(buffer)
        buffer.seek(0)
        new = [item.seq_item_tell for item in pydicom.dcmread(buffer).DirectoryRecordSequence]
        moved = dict(zip(old, new, strict=True)) | {0: 0}
        for keyword in ("OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity",
                        "OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity"):
            ds[keyword].value = moved[ds[keyword].value]
        for item in ds.DirectoryRecordSequence:
            for keyword in ("OffsetOfTheNextDirectoryRecord", "OffsetOfReferencedLowerLevelDirectoryEntity"):
                if keyword in item:
                    item[keyword].value = moved[item[keyword].value]
        ds.save_as(path)


def image_records(ds: Dataset) -> list[Dataset]:
    return [item for item in ds.DirectoryRecordSequence if "ReferencedFileID" in item]


def key_rows(tree) -> set[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    return set(tree[KEYS].itertuples(index=False, name=None))


# -- the real thing ------------------------------------------------------------------------------
def test_pydicom_media(media: Path) -> None:
    before = tree_hashes(media)
    report = dicomnb.import_dicomdir(media)

    assert len(dicomnb.catalog) == 31 and report.added == 31
    assert dicomnb.catalog.missing.empty and dicomnb.catalog.errors.empty
    assert report.counts()["patients"] == 2 and report.counts()["studies"] == 6
    instances = dicomnb.catalog.instances
    assert set(instances["source"]) == {"dicomdir"} and set(instances["origin"]) == {str(media)}
    # the DICOMDIR's own tree agrees with what the files hold
    tree = report.tree
    assert len(tree) == 31 and set(tree["status"]) == {"ok"} and set(tree["level"]) == {"IMAGE"}
    assert key_rows(tree) == set(instances[KEYS].itertuples(index=False, name=None))
    assert "Doe^Archibald" in set(tree["PatientName"])
    # other DICOM files on the media (TINY_ALPHA, the DICOMDIR-* variants) are not imported
    assert not any("TINY_ALPHA" in p or "DICOMDIR" in p for p in instances["path"])
    assert report.skipped == 50 + 1 + 6
    assert sorted(Path(p).name for p in dicomnb.catalog.attachments["path"]) == ["README", "README.txt"]
    assert tree_hashes(media) == before

    dicomnb.catalog.clear()
    by_file = dicomnb.import_dicomdir(media / "DICOMDIR")
    assert by_file.added == 31 and len(by_file.tree) == 31
    dicomnb.catalog.clear()
    routed = dicomnb.import_local(media)  # a folder with a DICOMDIR is imported as media
    assert routed.added == 31 and routed.sources == [f"dicomdir:{media}"]


def test_kind_and_origin_for_an_extracted_archive(media: Path) -> None:
    (media / "77654033" / "CR1" / "6154").unlink()
    source = DicomdirSource(media / "DICOMDIR", kind="zip", origin="/downloads/cd.zip")
    items = [i for i in source.items() if not isinstance(i, SkippedRecord)]
    assert {(i.source, i.origin) for i in items} == {("zip", "/downloads/cd.zip")}
    assert {type(i).__name__ for i in items} == {"InstanceRecord", "MissingRecord", "AttachmentRecord"}
    assert set(source.tree()["origin"]) == {"/downloads/cd.zip"}


def test_lower_cased_media(media: Path) -> None:
    lower_case_tree(media)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns once per file it cannot find
        fileset = FileSet(pydicom.dcmread(media / "dicomdir"))
    fileset._stage["t"].cleanup()  # FileSet has no close(): free its staging folder now
    assert len(fileset) == 0  # pydicom's FileSet finds none of the 31 files

    with dicomnb.settings.override(workers=2, parallel_threshold=10):  # headers read by workers
        report = dicomnb.import_dicomdir(media)
    assert report.added == 31 and dicomnb.catalog.missing.empty
    assert all(Path(p).name == Path(p).name.lower() for p in report.tree["path"])
    assert find_dicomdir(media) == media / "dicomdir"


def test_name_with_extension(media: Path) -> None:
    for path in [p for p in media.rglob("*") if p.is_file() and p.parent.name in {"MR1", "CT2"}]:
        path.rename(path.with_name(path.name.lower() + ".dcm"))
    report = dicomnb.import_dicomdir(media)
    assert report.added == 31
    assert sum(p.endswith(".dcm") for p in dicomnb.catalog.instances["path"]) == 3 + 4


# -- what is wrong on the media ------------------------------------------------------------------
def test_missing_files(media: Path) -> None:
    gone = ["77654033/CR2/6247", "98892003/MR2/4950", "98892001/CT5N/2062"]
    for name in gone:
        (media / name).unlink()
    report = dicomnb.import_dicomdir(media)

    assert report.added == 28
    missing = dicomnb.catalog.missing
    assert sorted(missing["ReferencedFileID"]) == sorted(gone)
    assert set(missing["reason"]) == {"file not found on the media"}
    tree = report.tree.set_index("ReferencedFileID")
    assert set(missing["SOPInstanceUID"]) == set(tree.loc[gone, "SOPInstanceUID"])
    assert list(tree.loc[gone, "status"]) == ["missing"] * 3 and tree.loc[gone, "path"].isna().all()
    assert set(missing["PatientID"]) == set(tree.loc[gone, "PatientID"]) and missing["PatientID"].notna().all()


def test_truncated_and_swapped_files(media: Path) -> None:
    cut = media / "77654033" / "CT2" / "17136"
    cut.write_bytes(cut.read_bytes()[:600])
    shutil.copy(media / "98892003" / "MR1" / "4919", media / "98892003" / "MR1" / "5641")
    report = dicomnb.import_dicomdir(media)

    assert report.added == 29
    errors = dicomnb.catalog.errors
    assert list(errors["error"]) == ["TruncatedFileError"] and errors["path"][0] == str(cut)
    (swapped,) = report.missing
    assert swapped.ReferencedFileID == "98892003/MR1/5641"
    assert "another instance" in swapped.reason
    assert dicomnb.catalog.get(swapped.SOPInstanceUID) is None
    status = report.tree.set_index("ReferencedFileID")["status"]
    assert status["77654033/CT2/17136"] == "unreadable" and status["98892003/MR1/5641"] == "other instance"


def test_traversal_is_refused(media: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    # real instances outside the media: following a link would import them
    shutil.copy(media / "77654033" / "CR1" / "6154", outside / "6154")
    shutil.copy(media / "77654033" / "CR2" / "6247", outside / "6247")
    (media / "77654033" / "CR1" / "6154").unlink()
    (media / "LINK").symlink_to(outside, target_is_directory=True)
    (media / "77654033" / "CR2" / "6247").unlink()
    (media / "77654033" / "CR2" / "6247").symlink_to(outside / "6247")
    inside_link = media / "CR3LINK"
    inside_link.symlink_to(media / "77654033" / "CR3", target_is_directory=True)

    ds = read_dicomdir(media / "DICOMDIR")
    records = image_records(ds)
    assert [records[i].ReferencedFileID[-1] for i in range(3)] == ["6154", "6247", "6278"]
    edits = {
        0: ["LINK", "6154"],  # a folder link leading out
        # 1: unchanged, "77654033/CR2/6247" is now a file link leading out
        2: ["CR3LINK", "6278"],  # a link that stays inside the media is fine
        3: ["..", "outside", "6154"],
        4: "/etc/passwd",
        5: ["C:", "WINDOWS", "WIN.INI"],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the values: they are the point
        for index, file_id in edits.items():
            records[index].ReferencedFileID = file_id
    write_dicomdir(ds, media / "DICOMDIR")
    before = tree_hashes(media)

    report = dicomnb.import_dicomdir(media)
    errors = dicomnb.catalog.errors
    assert list(errors["error"]) == ["UnsafePathError"] * 5
    assert any("outside the media" in m for m in errors["message"])
    assert any("'..'" in m for m in errors["message"]) and any("absolute" in m for m in errors["message"])
    paths = list(dicomnb.catalog.instances["path"])
    assert report.added == 31 - 5
    assert all(os.path.realpath(p).startswith(str(media.resolve())) for p in paths)
    assert not any(str(outside) in p for p in paths)
    assert str(inside_link / "6278") in paths
    assert (report.tree["status"] == "unsafe").sum() == 5
    assert tree_hashes(media) == before and sorted(os.listdir(outside)) == ["6154", "6247"]
    assert "sequence order" not in caplog.text  # the rewritten offsets were followed


def test_dcmmkdir_media(tmp_path: Path, test_files: Path) -> None:
    dcmmkdir = require_tool("dcmmkdir")
    media = tmp_path / "dvd"
    (media / "DICOM").mkdir(parents=True)
    for source, name in [("CT_small.dcm", "CT000001"), ("MR_small.dcm", "MR000001"),
                         ("rtplan.dcm", "RP000001"), ("rtdose.dcm", "RD000001")]:
        shutil.copy(test_files / source, media / "DICOM" / name)
    subprocess.run([dcmmkdir, "+r", "+I", "-Nxc", "DICOM"], cwd=media, check=True, capture_output=True,
                   env={**os.environ, "TCP_NODELAY": "1"})
    assert (media / "DICOMDIR").is_file() and is_dicomdir_file(str(media / "DICOMDIR"))

    report = dicomnb.import_dicomdir(media)
    assert report.added == 4 and report.missing == [] and report.errors == []
    assert set(report.tree["level"]) == {"IMAGE", "RT PLAN", "RT DOSE"}
    assert set(dicomnb.catalog.instances["Modality"]) == {"CT", "MR", "RTPLAN", "RTDOSE"}

    dicomnb.catalog.clear()
    lower_case_tree(media)
    again = dicomnb.import_dicomdir(media)
    assert again.added == 4 and set(again.tree["status"]) == {"ok"}
    assert all("/dicom/" in p for p in dicomnb.catalog.instances["path"])


# -- attachments, copies, detection ---------------------------------------------------------------
def _extra_files(folder: Path) -> None:
    from PIL import Image

    (folder / "report.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n")
    (folder / "data.xlsx").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty ZIP container
    (folder / "model.stl").write_text("solid cube\nendsolid cube\n")
    (folder / "model.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    Image.new("RGB", (8, 8), "red").save(folder / "photo.jpg")


def test_attachments(media: Path, tmp_path: Path) -> None:
    _extra_files(media)
    dicomnb.import_dicomdir(media)
    attachments = dicomnb.catalog.attachments.set_index("path")
    expected = {"report.pdf": "pdf", "data.xlsx": "spreadsheet", "model.stl": "3d-model",
                "model.obj": "3d-model", "photo.jpg": "image"}
    for name, kind in expected.items():
        row = attachments.loc[str(media / name)]
        assert row["kind"] == kind and row["size"] == (media / name).stat().st_size
    assert dicomnb.catalog.images.empty  # on media, a JPEG is an attachment, not an image

    dicomnb.catalog.clear()
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(media / "77654033" / "CR1" / "6154", plain / "6154")
    _extra_files(plain)
    report = dicomnb.import_local(plain)
    assert report.added == 1 and dicomnb.catalog.attachments.empty
    assert list(dicomnb.catalog.images["format"]) == ["jpeg"]


def test_copy_to_local_folder(media: Path, isolated_cache: Path) -> None:
    (media / "notes.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    before = tree_hashes(media)
    source = DicomdirSource(media, copy=True)
    report = dicomnb.catalog.ingest(source)

    assert report.added == 31 and source.copy_root is not None
    assert source.copy_root.is_relative_to(isolated_cache) and (source.copy_root / "DICOMDIR").is_file()
    tree = source.tree().set_index("SOPInstanceUID")
    for record in report.instances:
        assert Path(record.path).is_relative_to(source.copy_root)
        assert Path(record.path).read_bytes() == Path(tree.loc[record.SOPInstanceUID, "path"]).read_bytes()
    assert list(dicomnb.catalog.attachments["path"]).count(str(media / "notes.pdf")) == 1
    assert tree_hashes(media) == before


def test_detect_cdrom(tmp_path: Path, test_files: Path) -> None:
    mounts = tmp_path / "media"
    shutil.copytree(test_files / "dicomdirtests", mounts / "user" / "CDROM")
    junk = tmp_path / "mnt" / "junk"
    junk.mkdir(parents=True)
    (junk / "DICOMDIR").write_bytes(b"not a DICOMDIR\n" * 200)
    plain = tmp_path / "mnt" / "plain"
    plain.mkdir()
    shutil.copy(test_files / "CT_small.dcm", plain / "DICOMDIR")
    deep = tmp_path / "deep" / "a" / "b" / "c"
    shutil.copytree(test_files / "dicomdirtests", deep)

    found = detect_cdrom([mounts, tmp_path / "mnt", tmp_path / "nowhere", tmp_path / "deep"])
    assert found == [mounts / "user" / "CDROM"]
    assert detect_cdrom([mounts / "user" / "CDROM"]) == [mounts / "user" / "CDROM"]
    assert isinstance(detect_cdrom(), list)  # the real mount points: never raises


# -- DICOMDIRs that cannot be used, and the variants that can -------------------------------------
def test_unreadable_dicomdir(tmp_path: Path, test_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "DICOMDIR").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DicomdirError, match="DICOMDIR"):
        dicomnb.import_dicomdir(junk)
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(test_files / "CT_small.dcm", plain / "DICOMDIR")
    with pytest.raises(DicomdirError, match="holds a DICOM instance"):
        dicomnb.import_dicomdir(plain / "DICOMDIR")
    with pytest.raises(DicomdirError, match="no DICOMDIR"):
        DicomdirSource(tmp_path)

    # a batch import reports the unreadable index and imports the folder's files without it
    assert main(["get", "-l", str(plain), "-l", str(test_files / "CT_small.dcm")]) == 0
    out = capsys.readouterr().out
    assert "1 instances" in out and "DicomdirError" in out
    shutil.copy(test_files / "MR_small.dcm", junk / "MR_small")
    report = dicomnb.import_local(junk)
    assert [Path(r.path).name for r in report.instances] == ["MR_small"]
    assert [(e.path, e.error) for e in report.errors] == [(str(junk), "DicomdirError")]


def test_empty_dicomdir(media: Path, test_files: Path) -> None:
    shutil.copy(test_files / "dicomdirtests" / "DICOMDIR-empty.dcm", media / "DICOMDIR")
    report = dicomnb.import_dicomdir(media)
    assert report.added == 0 and report.tree.empty and report.skipped == 31 + 57


@pytest.mark.parametrize("variant", ["DICOMDIR-implicit", "DICOMDIR-reordered", "DICOMDIR-nooffset",
                                     "DICOMDIR-bigEnd"])
def test_dicomdir_variants(media: Path, test_files: Path, variant: str) -> None:
    expected = key_rows(DicomdirSource(media).tree())
    shutil.copy(test_files / "dicomdirtests" / variant, media / "DICOMDIR")
    report = dicomnb.import_dicomdir(media)
    assert report.added == 31 and set(report.tree["status"]) == {"ok"}
    assert key_rows(report.tree) == expected


def test_offsets_unusable(media: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = key_rows(DicomdirSource(media).tree())
    ds = read_dicomdir(media / "DICOMDIR")
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    for item in ds.DirectoryRecordSequence:
        item.OffsetOfTheNextDirectoryRecord = 0
        item.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(media / "DICOMDIR")
    report = dicomnb.import_dicomdir(media)
    assert report.added == 31 and key_rows(report.tree) == expected
    assert "sequence order" in caplog.text  # the hierarchy came from the order of the records


def test_recognising_a_dicomdir(media: Path, test_files: Path) -> None:
    assert is_dicomdir_file(str(media / "DICOMDIR-bigEnd"))  # by its meta, whatever its name
    assert is_dicomdir_file(str(media / "dicomdir.;1"))  # by its name, even absent
    assert not is_dicomdir_file(str(test_files / "CT_small.dcm"))
    assert find_dicomdir(media / "77654033") is None and find_dicomdir(media / "nowhere") is None
    (media / "DICOMDIR").rename(media / "DICOMDIR.;1")
    assert find_dicomdir(media) == media / "DICOMDIR.;1"
