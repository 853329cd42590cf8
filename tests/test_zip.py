"""DICOM ZIP archives: plain and encrypted, DICOMDIR inside, and hostile archives refused."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pydicom
import pytest
import pyzipper
from conftest import TEST_FILES, require_tool, tree_hashes

import dicomnb
from dicomnb.core.model import InstanceRecord
from dicomnb.errors import ArchiveError, PasswordRequired, WrongPassword
from dicomnb.sources.ziparchive import ZipSource

MiB = 1024 * 1024


def _uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def raw_zip(path: Path, entries: list[dict], central: list[dict] | None = None) -> None:
    """Write a ZIP byte by byte, so that its directory can say what a hostile archive says.

    Each entry: ``name``, ``data`` (bytes as stored), ``method`` (0 stored, 8 deflate), ``crc``,
    ``size`` (declared uncompressed size). ``central`` (default: one record per entry) may
    point several records at the same local header (``at``: index of the entry) or declare
    other sizes (``csize``).
    """
    out = bytearray()
    offsets = []
    for e in entries:
        name = e["name"].encode("utf-8")
        offsets.append(len(out))
        out += struct.pack("<4sHHHHHLLLHH", b"PK\x03\x04", 20, 0x800, e["method"], 0, 0x21,
                           e["crc"], len(e["data"]), e["size"], len(name), 0)
        out += name + e["data"]
    directory_start = len(out)
    records = central if central is not None else [{"at": i} for i in range(len(entries))]
    for record in records:
        e = entries[record["at"]]
        name = record.get("name", e["name"]).encode("utf-8")
        out += struct.pack("<4sHHHHHHLLLHHHHHLL", b"PK\x01\x02", 20, 20, 0x800, e["method"], 0, 0x21,
                           e["crc"], record.get("csize", len(e["data"])), record.get("size", e["size"]),
                           len(name), 0, 0, 0, 0, 0, offsets[record["at"]])
        out += name
    out += struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, len(records), len(records),
                       len(out) - directory_start, directory_start, 0)
    path.write_bytes(bytes(out))


def entry(name: str, content: bytes, deflate: bool = True) -> dict:
    if deflate:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = packer.compress(content) + packer.flush()
    else:
        data = content
    return {"name": name, "data": data, "method": 8 if deflate else 0, "crc": zlib.crc32(content),
            "size": len(content)}


@pytest.fixture
def study_zip(sample_tree: Path, tmp_path: Path) -> Path:
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(sample_tree.rglob("*")):
            zf.write(path, path.relative_to(sample_tree).as_posix())
    return archive


def _files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_instances_are_read_in_the_archive(sample_tree: Path, tmp_path: Path, compression: int,
                                          isolated_cache: Path) -> None:
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", compression) as zf:
        for path in sorted(sample_tree.rglob("*")):
            zf.write(path, "STUDY/" + path.relative_to(sample_tree).as_posix())
    before = tree_hashes(tmp_path)
    report = dicomnb.import_zip(archive)
    df = dicomnb.catalog.instances
    assert len(df) == 4 and set(df["source"]) == {"zip"} and set(df["origin"]) == {str(archive)}
    assert set(df["path"]) == {str(archive)}  # the instances stay in their archive
    assert set(df["member"]) == {"STUDY/CT_small.dcm", "STUDY/sub/MRSMALL", "STUDY/sub/deeper/plan.IMA",
                                 "STUDY/sub/raw.bin"}
    for row in df.itertuples():
        original = pydicom.dcmread(sample_tree / row.member.removeprefix("STUDY/"), force=True)
        assert dicomnb.catalog.dataset(row.SOPInstanceUID) == original
    assert list(dicomnb.catalog.images["member"]) == ["STUDY/photo.png"]
    assert report.skipped == 1  # notes.txt
    assert _files_in(isolated_cache) == set()  # nothing was extracted
    # pixels come from the entry, exactly as from the file
    ct = df[df["member"] == "STUDY/CT_small.dcm"].iloc[0]
    from_zip = dicomnb.load_series(ct.SeriesInstanceUID)
    dicomnb.catalog.clear()
    dicomnb.import_local(sample_tree / "CT_small.dcm")
    assert (from_zip == dicomnb.load_series(ct.SeriesInstanceUID)).all()
    assert tree_hashes(tmp_path) == before  # the archive is not modified


def test_copy_lands_the_entries_in_the_cache(study_zip: Path, sample_tree: Path, isolated_cache: Path) -> None:
    dicomnb.import_zip(study_zip, copy=True)
    df = dicomnb.catalog.instances
    assert len(df) == 4
    for row in df.itertuples():
        assert Path(row.path).is_relative_to(isolated_cache)
        assert Path(row.path).read_bytes() == (sample_tree / row.member).read_bytes()
    assert [Path(p).name for p in dicomnb.catalog.images["path"]] == ["photo.png"]
    assert "notes.txt" not in _files_in(isolated_cache)  # counted, not kept


def test_import_local_routes_a_zip_by_content(study_zip: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "download.bin"  # the name does not say ZIP: the content does
    shutil.copy(study_zip, renamed)
    dicomnb.import_local(renamed)
    assert set(dicomnb.catalog.instances["source"]) == {"zip"}
    assert len(dicomnb.catalog.instances) == 4


def test_importing_again_adds_nothing_and_reuses_the_cache(study_zip: Path) -> None:
    first = dicomnb.import_zip(study_zip, copy=True)
    paths = sorted(dicomnb.catalog.instances["path"])
    second = dicomnb.import_zip(study_zip, copy=True)
    assert first.added == 4 and second.added == 0 and second.duplicates == 4
    assert sorted(dicomnb.catalog.instances["path"]) == paths


def test_aes_password(sample_tree: Path, tmp_path: Path) -> None:
    archive = tmp_path / "aes.zip"
    with pyzipper.AESZipFile(archive, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword("pässwörd".encode())
        for name in ["CT_small.dcm", "sub/MRSMALL"]:
            zf.write(sample_tree / name, name)
    with pytest.raises(PasswordRequired, match="password"):
        dicomnb.import_zip(archive)
    with pytest.raises(WrongPassword):
        dicomnb.import_zip(archive, password="password")
    assert len(dicomnb.catalog.instances) == 0  # nothing imported from a refused archive
    assert dicomnb.import_zip(archive, password="pässwörd").counts()["instances"] == 2
    # the entries are read again for pixels: the password is kept for this process
    volume = dicomnb.load_series(dicomnb.catalog.series["SeriesInstanceUID"].iloc[0])
    assert volume.ndim == 3
    assert "pässwörd" not in repr(ZipSource(archive, password="pässwörd"))


def test_zipcrypto_password_from_info_zip(sample_tree: Path, tmp_path: Path) -> None:
    zip_tool = require_tool("zip")
    archive = tmp_path / "legacy.zip"
    subprocess.run([zip_tool, "-q", "-r", "-P", "s3cret", str(archive), "."], cwd=sample_tree, check=True)
    with pytest.raises(PasswordRequired):
        dicomnb.import_zip(archive)
    for wrong in ["s3cre", "S3CRET", "x", "s3cret "]:
        with pytest.raises(WrongPassword):
            dicomnb.import_zip(archive, password=wrong)
    report = dicomnb.import_zip(archive, password=b"s3cret")
    assert report.counts()["instances"] == 4 and not report.errors


@pytest.mark.parametrize("copy", [False, True])
def test_bad_entries_are_reported_and_the_rest_imports(tmp_path: Path, isolated_cache: Path, copy: bool) -> None:
    ct = (TEST_FILES / "CT_small.dcm").read_bytes()
    mr = (TEST_FILES / "MR_small.dcm").read_bytes()
    damaged = entry("damaged.dcm", mr)
    damaged["data"] = damaged["data"][:100] + bytes([damaged["data"][100] ^ 0xFF]) + damaged["data"][101:]
    archive = tmp_path / "mixed.zip"
    raw_zip(archive, [entry("good/ct.dcm", ct), damaged, entry("cut.dcm", ct[:700]),
                      entry("../../escape.dcm", mr), entry("/etc/absolute.dcm", mr),
                      entry("C:\\Windows\\drive.dcm", mr), entry("a/../../up.dcm", mr)])
    dicomnb.import_zip(archive, copy=copy)
    assert list(dicomnb.catalog.instances["member"]) == ["good/ct.dcm"]
    errors = dict(zip(dicomnb.catalog.errors["member"], dicomnb.catalog.errors["error"], strict=True))
    assert errors == {"damaged.dcm": "ArchiveError", "cut.dcm": "TruncatedFileError",
                      "../../escape.dcm": "UnsafePathError", "/etc/absolute.dcm": "UnsafePathError",
                      "C:\\Windows\\drive.dcm": "UnsafePathError", "a/../../up.dcm": "UnsafePathError"}
    # nothing was written outside the cache
    assert not list(tmp_path.parent.rglob("escape.dcm")) and not list(tmp_path.parent.rglob("up.dcm"))
    assert not Path("/etc/absolute.dcm").exists()
    assert _files_in(isolated_cache) == ({"ct.dcm", "cut.dcm"} if copy else set())


@pytest.mark.parametrize("copy", [False, True])
def test_duplicate_and_case_colliding_names_lose_nothing(tmp_path: Path, copy: bool) -> None:
    files = [TEST_FILES / name for name in ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm"]]
    archive = tmp_path / "collide.zip"
    raw_zip(archive, [entry("same.dcm", files[0].read_bytes()), entry("same.dcm", files[1].read_bytes()),
                      entry("Series/IMG.dcm", files[2].read_bytes()),
                      entry("series/img.DCM", files[3].read_bytes())])
    dicomnb.import_zip(archive, copy=copy)
    df = dicomnb.catalog.instances
    assert set(df["SOPInstanceUID"]) == {_uid(f) for f in files}
    if copy:
        assert len(set(df["path"])) == 4  # four files in the cache, none overwritten
    for uid in df["SOPInstanceUID"]:  # each record reads its own entry, even under a shared name
        assert dicomnb.catalog.dataset(uid).SOPInstanceUID == uid


def test_dicomdir_in_a_subfolder_of_the_archive(tmp_path: Path) -> None:
    media = tmp_path / "cd"
    shutil.copytree(TEST_FILES / "dicomdirtests", media)
    (media / "77654033" / "CR2" / "6247").unlink()  # one record without its file
    (media / "report.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(media.rglob("*")):
            zf.write(path, "export/" + path.relative_to(media).as_posix())
    report = dicomnb.import_zip(archive)
    assert len(dicomnb.catalog.instances) == 30  # the DICOMDIR's 31 records less the missing one
    assert set(dicomnb.catalog.instances["source"]) == {"zip"}
    assert dicomnb.catalog.instances["member"].str.startswith("export/").all()
    missing = dicomnb.catalog.missing
    assert list(missing["ReferencedFileID"]) == ["77654033/CR2/6247"]
    # every non-DICOM file on the media is an attachment: ours, and pydicom's two READMEs
    assert set(dicomnb.catalog.attachments["member"]) == {"export/report.pdf", "export/README.txt",
                                                         "export/TINY_ALPHA/README"}
    assert report.tree is not None and len(report.tree) == 31


def test_dicomdir_at_the_root_of_the_archive(tmp_path: Path) -> None:
    archive = tmp_path / "root.zip"
    media = TEST_FILES / "dicomdirtests"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(media.rglob("*")):
            zf.write(path, path.relative_to(media).as_posix())
    dicomnb.import_zip(archive)
    # the root DICOMDIR's 31 records; TINY_ALPHA (its own DICOMDIR, below the root) is not indexed by it
    assert len(dicomnb.catalog.instances) == 31


def test_one_mb_that_claims_one_gib_is_refused_before_anything_is_written(
    tmp_path: Path, isolated_cache: Path
) -> None:
    archive = tmp_path / "bomb.zip"
    zero = bytes(MiB)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf, \
            zf.open("bomb.dcm", "w", force_zip64=True) as f:
        for _ in range(1024):
            f.write(zero)
    assert archive.stat().st_size < 2 * MiB
    with pytest.raises(ArchiveError, match="zip bomb"):
        dicomnb.import_zip(archive)
    assert _folder_size(isolated_cache) < 64 * MiB
    assert len(dicomnb.catalog) == 0


@pytest.mark.parametrize("layout", ["same-offset", "spanning"])
def test_overlapping_entries_are_refused(tmp_path: Path, isolated_cache: Path, layout: str) -> None:
    kernel = entry("kernel.dcm", bytes(4 * MiB))  # 4 MiB of zeros in about 4 kB
    archive = tmp_path / "overlap.zip"
    if layout == "same-offset":  # 1,000 names for the same compressed bytes: 4 GiB from 4 kB
        raw_zip(archive, [kernel], [{"at": 0, "name": f"f{i}.dcm"} for i in range(1000)])
    else:  # the first entry's data claims to run over the second entry's header
        second = entry("second.dcm", bytes(4 * MiB))
        raw_zip(archive, [kernel, second], [{"at": 0, "csize": len(kernel["data"]) + 40}, {"at": 1}])
    with pytest.raises(ArchiveError, match="overlapping"):
        dicomnb.import_zip(archive)
    assert _folder_size(isolated_cache) < 64 * MiB


def test_an_entry_never_yields_more_than_it_declares(tmp_path: Path, isolated_cache: Path) -> None:
    liar = entry("liar.dcm", bytes(256 * MiB))
    liar["size"], liar["crc"] = 4096, zlib.crc32(bytes(4096))  # says 4 kB, inflates to 256 MiB
    archive = tmp_path / "liar.zip"
    raw_zip(archive, [liar, entry("ct.dcm", (TEST_FILES / "CT_small.dcm").read_bytes())])
    report = dicomnb.import_zip(archive)
    assert report.counts()["instances"] == 1
    assert _folder_size(isolated_cache) < MiB


@pytest.mark.parametrize("damage", ["not-a-zip", "cut"])
def test_unreadable_archive_is_an_archive_error(study_zip: Path, tmp_path: Path, damage: str) -> None:
    bad = tmp_path / "bad.zip"
    data = study_zip.read_bytes()
    bad.write_bytes(b"PK\x03\x04 but nothing else" if damage == "not-a-zip" else data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="ZIP"):
        dicomnb.import_zip(bad)


def test_limits_come_from_the_settings(study_zip: Path) -> None:
    with dicomnb.settings.override(zip_max_entries=3), pytest.raises(ArchiveError, match="zip_max_entries"):
        dicomnb.import_zip(study_zip)
    with dicomnb.settings.override(zip_max_total_bytes=1000), \
            pytest.raises(ArchiveError, match="zip_max_total_bytes"):
        dicomnb.import_zip(study_zip)


def test_worker_processes_give_the_same_items(sample_tree: Path, tmp_path: Path) -> None:
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(40):
            for path in sorted(sample_tree.rglob("*")):
                if path.is_file():
                    zf.write(path, f"copy{i}/" + path.relative_to(sample_tree).as_posix())
    with dicomnb.settings.override(workers=1):
        serial = sorted(ZipSource(archive).items(), key=repr)
    with dicomnb.settings.override(workers=2, parallel_threshold=10):
        parallel = sorted(ZipSource(archive).items(), key=repr)
    assert parallel == serial
    assert sum(isinstance(i, InstanceRecord) for i in parallel) == 160


@pytest.mark.parametrize("deflate", [False, True])
def test_entry_reader_reads_and_seeks_like_the_file(tmp_path: Path, deflate: bool) -> None:
    import os

    from dicomnb.core.archive import EntryReader

    content = (TEST_FILES / "CT_small.dcm").read_bytes()
    archive = tmp_path / "one.zip"
    one = entry("ct.dcm", content, deflate)
    raw_zip(archive, [one])
    fd = os.open(archive, os.O_RDONLY)
    try:
        reader = EntryReader(fd, 0, b"ct.dcm", one["method"], len(one["data"]), len(content))
        assert reader.read(100) == content[:100]
        reader.seek(30000)  # forward: inflates up to there
        assert reader.read(50) == content[30000:30050]
        reader.seek(10)  # backward: starts again
        assert reader.read() == content[10:]
        assert reader.read(10) == b""
        with pytest.raises(ArchiveError, match="forged"):
            EntryReader(fd, 0, b"other.dcm", one["method"], len(one["data"]), len(content))
    finally:
        os.close(fd)


def test_only_landing_needs_room_in_the_cache(study_zip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import collections

    full = collections.namedtuple("usage", "total used free")(10**9, 10**9, 0)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: full)  # a cache disk with no room left
    assert dicomnb.import_zip(study_zip).counts()["instances"] == 4  # read in place: nothing written
    with pytest.raises(ArchiveError, match="free some space"):
        dicomnb.import_zip(study_zip, copy=True)
