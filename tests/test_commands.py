"""The Weasis command protocol (dicomnb.commands): weasis:// URIs, quoting, options, errors."""

from __future__ import annotations

import base64
import gzip
import os
import re
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from dicomnb.commands import (
    PORTABLE_FOLDERS,
    SUPPORTED_COMMANDS,
    CommandHelp,
    DicomClose,
    DicomGet,
    DicomRs,
    ImageGet,
    RsRequest,
    WeasisConfig,
    parse_command,
    parse_commands,
    parse_uri,
    weasis_portable_folders,
)
from dicomnb.core.errors import CommandError, InputError
from dicomnb.core.manifest import parse_inline_manifest

MANIFEST = """<?xml version="1.0" encoding="UTF-8" ?>
<manifest xmlns="http://www.weasis.org/xsd/2.5">
<arcQuery arcId="1" baseUrl="http://127.0.0.1:8042/wado">
<Patient PatientID="P1" PatientName="DOE^JANE"><Study StudyInstanceUID="1.2"><Series SeriesInstanceUID="1.2.3">
<Instance SOPInstanceUID="1.2.3.4"/></Series></Study></Patient></arcQuery></manifest>
"""

# Three commands as a web page encodes them (URLEncoder: spaces as "+", "$" as %24).
SCRIPT = ('$dicom:get -w "https://nroduit.github.io/demo-archive/Lumbar/mf.xml" -l "/data/My scans" '
          '$dicom:rs -u http://127.0.0.1:8042/dicom-web/ -r "studyUID=1.2.3&seriesUID=1.2.3.4" '
          '-H "Authorization: Bearer t0k3n" '
          "$dicom:close -y 1.2.3")


def test_uri_with_several_commands_is_decoded_and_split_in_order() -> None:
    commands = parse_uri("weasis://" + quote_plus(SCRIPT))
    assert [type(c) for c in commands] == [DicomGet, DicomRs, DicomClose]
    get, rs, close = commands
    assert get == DicomGet(wado=("https://nroduit.github.io/demo-archive/Lumbar/mf.xml",),
                           local=("/data/My scans",))
    assert rs.url == "http://127.0.0.1:8042/dicom-web"  # the trailing slash dropped, as Weasis does
    assert rs.requests == (RsRequest((("studyUID", "1.2.3"), ("seriesUID", "1.2.3.4"))),)
    assert rs.headers == (("authorization", "Bearer t0k3n"),)
    assert close == DicomClose(study=("1.2.3",))


@pytest.mark.parametrize("prefix", ["weasis://", "weasis://?", "weasis:///?", "WEASIS://", "weasis-dev://?"])
def test_every_uri_form_gives_the_same_commands(prefix: str) -> None:
    expected = parse_commands(SCRIPT)
    assert parse_uri(prefix + quote_plus(SCRIPT)) == expected
    assert parse_uri(prefix + quote(SCRIPT, safe="")) == expected  # %20 rather than +
    assert parse_commands(prefix + quote_plus(SCRIPT)) == expected  # parse_commands reads URIs too


def test_uri_decoding_follows_javas_url_decoder() -> None:
    # "+" is a space and %2B a plus; everything before the first "$" is dropped
    (get,) = parse_uri("weasis://?anything=here%24dicom%3Aget+-l+%22/a+b/c%2Bd%22")
    assert get == DicomGet(local=("/a b/c+d",))
    # a "$" inside a value splits the URI, even encoded: Weasis splits after decoding
    with pytest.raises(CommandError, match="unknown command \\$price"):
        parse_uri("weasis://%24dicom%3Aget+-l+%2Fdata%24price")


def test_trailing_slash_on_windows() -> None:
    uri = "weasis://%24dicom%3Aget+-l+C%3A%2Fscans%2F"
    assert parse_uri(uri, windows=True) == [DicomGet(local=("C:/scans",))]
    assert parse_uri(uri, windows=False) == [DicomGet(local=("C:/scans/",))]


def test_inline_manifest_in_a_uri() -> None:
    data = base64.b64encode(gzip.compress(MANIFEST.encode(), mtime=0)).decode()
    extra = 0
    while "+" not in data:  # make sure the payload has a "+" that the URI decoding turns into a space
        extra += 1
        data = base64.b64encode(gzip.compress(MANIFEST.encode() + b" " * extra, mtime=0)).decode()
    # "+" left unescaped, as some pages write it: decoding makes it a space (hence the quotes,
    # without which the value would fall apart into several words, in Weasis too)
    (get,) = parse_uri(f'weasis://?$dicom:get -i "{data}"')
    assert " " in get.iwado[0]
    manifest = parse_inline_manifest(get.iwado[0])
    assert [r.sop_instance_uid for r in manifest.wado_requests()] == ["1.2.3.4"]


@pytest.mark.parametrize(("uri", "message"), [
    ("http://host/?$dicom:get -l x", "is not a weasis:// URI"),
    ("weasis://?%24dicom%3Aget+-l+%ZZ", "malformed escape '%ZZ'"),
    ("weasis://?patientID=1", "holds no command: commands start with \\$ \\(encoded %24\\)"),
    ("weasis://$", "holds no command"),
])
def test_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_uri(uri)


def test_commands_split_on_dollar_words_only() -> None:
    commands = parse_commands('$dicom:get -l "/data/$HOME" -l \'$x\' -l a$b $image:get -f x.png')
    assert commands == [DicomGet(local=("/data/$HOME", "$x", "a$b")), ImageGet(file=("x.png",))]
    # one command may leave its "$" out
    assert parse_commands("dicom:close -a") == [DicomClose(all=True)]
    assert parse_command("dicom:close -a") == DicomClose(all=True)


def test_quoting_as_a_shell_with_windows_paths() -> None:
    (get,) = parse_commands(
        r'$dicom:get -l "a \"quoted\" name" -l it\'s -l with\ space -l C:\scans\ct -l "C:\Program Files\x"'
        " -l '' -l 'single \"q\"'")
    assert get.local == ('a "quoted" name', "it's", "with space", r"C:\scans\ct", r"C:\Program Files\x",
                         "", 'single "q"')
    for broken, message in [('$dicom:get -l "open', "unclosed double quote"),
                            ("$dicom:get -l 'open", "unclosed single quote")]:
        with pytest.raises(CommandError, match=message):
            parse_commands(broken)


def test_option_forms_of_weasis_options_parser() -> None:
    (get,) = parse_commands("$dicom:get --local=/a --local /b -l/c -l /d --loc /e -w -starts-with-dash -pz z.zip")
    assert get.local == ("/a", "/b", "/c", "/d", "/e")
    assert get.wado == ("-starts-with-dash",)  # the word after a value option is its value
    assert get.portable and get.zip == ("z.zip",)  # -pz: flag -p, then -z with its value
    (close,) = parse_commands("$dicom:close -a -p P1 -p P2 -y 1.2 -s 1.2.3 -s 1.2.4")
    assert close == DicomClose(all=True, patient=("P1", "P2"), study=("1.2",), series=("1.2.3", "1.2.4"))
    assert parse_commands("$image:get -f a.png --url http://h/b.jpg -u http://h/c.jpg") == [
        ImageGet(file=("a.png",), url=("http://h/b.jpg", "http://h/c.jpg"))]


def test_dicom_get_keeps_every_source_in_order() -> None:
    (get,) = parse_commands("$dicom:get -r http://h/wado?requestType=WADO&objectUID=1 -z a.zip "
                            "-z https://h/b.zip -i QUJD -w mf.xml.gz -w http://h/mf -l x -p")
    assert get == DicomGet(local=("x",), remote=("http://h/wado?requestType=WADO&objectUID=1",),
                           wado=("mf.xml.gz", "http://h/mf"), zip=("a.zip", "https://h/b.zip"),
                           iwado=("QUJD",), portable=True)


def test_dicom_rs_headers_and_queries() -> None:
    (rs,) = parse_commands(
        "$dicom:rs --url http://pacs/dcm4chee-arc/aets/DCM4CHEE/rs -r patientID=P1 "
        "-r requestType=STUDY&accessionNumber=A1 -r studyUID=1.2&studyUID=1.3 "
        '-H "X-Common: c" --query-header "X-Common: q" --query-header "Accept: application/json" '
        '--retrieve-header "Authorization: &access_token=abc.def.ghi" --query-ext includefield=all '
        "--retrieve-ext x=1 --accept-ext transfer-syntax=1.2.840.10008.1.2.1 --show-whole-study")
    assert rs.requests[0].patient_ids == ("P1",)
    assert (rs.requests[1].request_type, rs.requests[1].accession_numbers) == ("STUDY", ("A1",))
    assert rs.requests[2].study_uids == ("1.2", "1.3") and rs.requests[2].request_type is None
    # names lowered; -H comes after the specific headers, so it wins (Weasis's HashMap order)
    assert rs.qido_headers() == {"x-common": "c", "accept": "application/json"}
    assert rs.wado_headers() == {"authorization": "Bearer abc.def.ghi", "x-common": "c"}
    assert (rs.query_ext, rs.retrieve_ext) == ("includefield=all", "x=1")
    assert rs.accept_ext == "transfer-syntax=1.2.840.10008.1.2.1" and rs.show_whole_study
    (default,) = parse_commands("$dicom:rs -u http://h/rs -u http://h/other/ -r objectUID=1.2.3.4")
    assert default.url == "http://h/other" and default.accept_ext == "transfer-syntax=*"
    assert default.requests[0].object_uids == ("1.2.3.4",)


@pytest.mark.parametrize(("command", "message"), [
    ("$dicom:rs -r studyUID=1", r"needs the DICOMweb URL \(-u URL\)"),
    ("$dicom:rs -u http://h/rs", r"needs what to load \(-r QUERY"),
    ("$dicom:rs -u http://h/rs -r studyUid=1", "unknown query key 'studyUid'.*patientID, studyUID, accessionNumber, seriesUID, objectUID"),
    ("$dicom:rs -u http://h/rs -r requestType=STUDY", "requestType=STUDY needs studyUID= or accessionNumber="),
    ("$dicom:rs -u http://h/rs -r requestType=PATIENT&studyUID=1", "requestType=PATIENT needs patientID="),
    ("$dicom:rs -u http://h/rs -r requestType=SERIES&seriesUID=1", "requestType=SERIES is not supported"),
    ("$dicom:rs -u http://h/rs -r patientName=DOE", "names nothing to load"),
    ("$dicom:rs -u http://h/rs -r studyUID=1 -H ': v'", "has no name"),
    ("$dicom:rs -u http://h/rs -r studyUID=1 --auth-uid 42", r"send the credentials as a header instead"),
])
def test_dicom_rs_errors(command: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_commands(command)


def test_weasis_config_is_kept_for_the_executor_to_skip() -> None:
    commands = parse_commands('$dicom:get -l x $weasis:config cdb=http://h/weasis pro="weasis.aet DICOMNB" novalue')
    assert commands[1] == WeasisConfig((("cdb", "http://h/weasis"), ("pro", "weasis.aet DICOMNB")))


def test_help_gives_the_usage() -> None:
    (help_,) = parse_commands("$dicom:close -?")
    assert isinstance(help_, CommandHelp) and help_.command == "dicom:close"
    assert help_.usage.startswith("Usage: dicom:close (-a | ")
    assert "-y/--study UID" in help_.usage
    assert parse_commands("$dicom:rs --help")[0] == CommandHelp("dicom:rs", "")  # usage is not compared


def test_unknown_command_names_the_supported_ones() -> None:
    for text in ["$dicom:send -l x", "weasis://%24dicom%3Aput", "$DICOM:GET -l x"]:
        with pytest.raises(CommandError) as caught:
            parse_commands(text)
        assert isinstance(caught.value, InputError)
        for name in SUPPORTED_COMMANDS:
            assert f"${name}" in str(caught.value)
    with pytest.raises(CommandError, match="case-sensitive: \\$dicom:get"):
        parse_commands("$DICOM:GET -l x")
    with pytest.raises(CommandError, match="'/data' is not a command"):
        parse_commands("/data $dicom:get -l x")


# Weasis's option names, per command (DicomModel.get/rs/close, image:get).
WEASIS_OPTIONS = {
    "dicom:get": ["-l/--local PATH", "-r/--remote URI", "-w/--wado URI", "-z/--zip URI",
                  "-p/--portable", "-i/--iwado DATA", "-?/--help"],
    "dicom:rs": ["-u/--url URL", "-r/--request QUERY", "-H/--header HEADER", "--query-header HEADER",
                 "--retrieve-header HEADER", "--query-ext EXT", "--retrieve-ext EXT", "--accept-ext EXT",
                 "--auth-uid UID", "--oidc-iss UID", "--oidc-login UID", "--show-whole-study", "-?/--help"],
    "dicom:close": ["-a/--all", "-p/--patient ID", "-y/--study UID", "-s/--series UID", "-?/--help"],
    "image:get": ["-f/--file FILE", "-u/--url URL", "-?/--help"],
}


@pytest.mark.parametrize("command", sorted(WEASIS_OPTIONS))
def test_unknown_option_names_the_commands_options(command: str) -> None:
    for bad in ["-x", "--nonsense", "--nonsense=1"]:
        with pytest.raises(CommandError) as caught:
            parse_commands(f"${command} {bad} value")
        text = str(caught.value)
        assert re.search(rf"{command} has no option '-{{1,2}}(x|nonsense)'", text)
        options = text.split("Its options: ", 1)[1]
        assert options.split(", ") == WEASIS_OPTIONS[command]


@pytest.mark.parametrize(("text", "message"), [
    ("$dicom:get", r"\$dicom:get was given nothing to do\. Usage: dicom:get"),
    ("$dicom:close", r"\$dicom:close was given nothing to do"),
    ("$image:get", r"\$image:get was given nothing to do"),
    ("$dicom:get /data", r"takes no bare argument \('/data'\).*-l/--local PATH"),
    ("$dicom:get -l", r"option '-l' needs a value \(PATH\)"),
    ("$dicom:get --wado", r"option '--wado' needs a value \(URI\)"),
    ("$dicom:get --portable=yes", r"'--portable' takes no value"),
    ("$dicom:rs --re x", r"'--re' is ambiguous \(--request, --retrieve-header, --retrieve-ext\)"),
    ("$dicom:get -- -l x", "takes no bare argument \\('-l'\\)"),
    ("   ", "no command given"),
])
def test_malformed_commands(text: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_commands(text)


def test_portable_folders(tmp_path: Path) -> None:
    assert not weasis_portable_folders(tmp_path)
    (tmp_path / "dicom").mkdir()
    (tmp_path / "IMAGES").mkdir()
    (tmp_path / "images").write_text("a file, not a folder")
    found = weasis_portable_folders(tmp_path)
    assert found.dicomdir is None and found.folders == (tmp_path / "dicom", tmp_path / "IMAGES")
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 132)
    assert weasis_portable_folders(str(tmp_path)).dicomdir == tmp_path / "DICOMDIR"
    assert PORTABLE_FOLDERS == ("dicom", "DICOM", "IMAGES", "images")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_portable_folders_count_one_folder_once(tmp_path: Path) -> None:
    (tmp_path / "dicom").mkdir()
    # what a case-insensitive file system does: DICOM and dicom are the same folder
    (tmp_path / "DICOM").symlink_to(tmp_path / "dicom", target_is_directory=True)
    assert weasis_portable_folders(tmp_path).folders == (tmp_path / "dicom",)
