"""Weasis manifests (dicomnb.core.manifest): XML 2.5, the older wado_query, JSON, gzip, base64.

The documents below are written the way Weasis's tools write them: the XML as
weasis-dicom-tools' ``ArcQuery.writeManifest`` lays it out (one element per line, attributes
escaped, ``xmlns`` after ``uid``), the JSON as Viewer-Hub serialises it (numbers and booleans as
JSON scalars, every level a list).
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
from pathlib import Path

import pytest

from dicomnb.core import manifest as mf
from dicomnb.core.errors import InputError, ManifestError
from dicomnb.core.manifest import (
    QueryMode,
    Severity,
    load_manifest,
    parse_inline_manifest,
    parse_manifest,
)

ST = "1.2.826.0.1.3680043.8.498.1"
SE1 = ST + ".1"
SE2 = ST + ".2"

WEASIS_XML = f"""<?xml version="1.0" encoding="UTF-8" ?>
<manifest uid="8a1d6b0e-5c43-4b1e-9f55-2a1d5c7e0b11" xmlns="http://www.weasis.org/xsd/2.5" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<arcQuery arcId="1001" baseUrl="http://127.0.0.1:8042/wado" webLogin="dXNlcjpwYXNz" requireOnlySOPInstanceUID="false" additionalParameters="&amp;session=42&amp;custodian=1.2.3" overrideDicomTagsList="0x00100010,0x00100020" >
<httpTag key="X-Archive-Token" value="t0k3n" />
<httpTag key="X-Site" value="north" />
<Message title="Partial result" description="2 of 3 series are available" severity="INFO" />
<Patient PatientID="PAT-1" PatientName="DOE^JANE" IssuerOfPatientID="HOSP" PatientBirthDate="19700101" PatientSex="F" >
<Study StudyInstanceUID="{ST}" StudyDescription="CT chest" StudyDate="20240102" StudyTime="101500" AccessionNumber="ACC-9" StudyID="7" >
<Series SeriesInstanceUID="{SE1}" SeriesDescription="axial" SeriesNumber="2" Modality="CT" WadoTransferSyntaxUID="1.2.840.10008.1.2.4.50" WadoCompressionRate="80" >
<Instance SOPInstanceUID="{SE1}.1" InstanceNumber="1" />
<Instance SOPInstanceUID="{SE1}.2" InstanceNumber="2" />
</Series>
<Series SeriesInstanceUID="{SE2}" SeriesNumber="3" Modality="SR" >
<Instance SOPInstanceUID="{SE2}.1" InstanceNumber="1" DirectDownloadFile="/files/report.dcm" />
</Series>
</Study>
</Patient>
</arcQuery>
<arcQuery arcId="backup" baseUrl="https://backup.example/wado?archive=b" additionnalParameters="&amp;legacy=1" >
<Patient PatientID="PAT-2" PatientName="ROE^RICHARD" >
<Study StudyInstanceUID="1.2.3" >
<Series SeriesInstanceUID="1.2.3.4" >
<Instance SOPInstanceUID="1.2.3.4.5" />
</Series>
</Study>
</Patient>
</arcQuery>
</manifest>
"""

# Viewer-Hub's own pair (weasis-dicom-explorer ViewerHubManifestParityTest): same tree.
VIEWER_HUB_XML = """<?xml version='1.0' encoding='UTF-8'?><manifest xmlns="http://www.weasis.org/xsd/2.5">\
<arcQuery arcId="arc1" baseUrl="http://pacs/wado" webLogin="dXNlcjpwYXNz" requireOnlySOPInstanceUID="false" queryMode="DICOM">\
<Patient PatientID="P1" IssuerOfPatientID="ISS" PatientName="DOE^JOHN" PatientBirthDate="19860611" PatientSex="F">\
<Study StudyInstanceUID="ST1" StudyDescription="head" StudyDate="20260611" StudyTime="103731" AccessionNumber="ACC1" StudyID="1">\
<Series SeriesInstanceUID="SE1" SeriesDescription="t2" SeriesNumber="13" Modality="MR" WadoTransferSyntaxUID="*">\
<Instance SOPInstanceUID="IM1" InstanceNumber="1"/><Instance SOPInstanceUID="IM2" InstanceNumber="2"/>\
</Series></Study></Patient></arcQuery></manifest>"""

VIEWER_HUB_JSON = """{"manifest":{"arcQuery":[{"Patient":[{"PatientID":"P1","IssuerOfPatientID":"ISS",\
"PatientName":"DOE^JOHN","PatientBirthDate":"19860611","PatientSex":"F","Study":[{"Series":[\
{"Instance":[{"SOPInstanceUID":"IM1","InstanceNumber":1},{"SOPInstanceUID":"IM2","InstanceNumber":2}],\
"SeriesInstanceUID":"SE1","SeriesDescription":"t2","SeriesNumber":13,"Modality":"MR","WadoTransferSyntaxUID":"*"}],\
"StudyInstanceUID":"ST1","StudyDescription":"head","StudyDate":"20260611","StudyTime":"103731",\
"AccessionNumber":"ACC1","StudyID":"1"}]}],"arcId":"arc1","baseUrl":"http://pacs/wado",\
"webLogin":"dXNlcjpwYXNz","requireOnlySOPInstanceUID":false,"queryMode":"DICOM"}]}}"""

LEGACY_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<wado_query xmlns="http://www.weasis.org/xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" wadoURL="http://pacs:8080/wado" requireOnlySOPInstanceUID="true" additionnalParameters="&amp;session=7" overrideDicomTagsList="" >
<httpTag key="Cookie" value="JSESSIONID=abc" />
<Patient PatientID="P9" PatientName="OLD^FORMAT" >
<Study StudyInstanceUID="1.9" >
<Series SeriesInstanceUID="1.9.1" >
<Instance SOPInstanceUID="1.9.1.1" />
</Series>
</Study>
</Patient>
</wado_query>
"""


def dicom_web(body: str, *, extra: str = "") -> str:
    return (f'<manifest xmlns="http://www.weasis.org/xsd/2.5"><arcQuery arcId="rs" '
            f'baseUrl="http://127.0.0.1:8042/dicom-web/" queryMode="DICOM_WEB" {extra}>{body}'
            "</arcQuery></manifest>")


def test_weasis_xml_manifest_is_read_whole() -> None:
    manifest = parse_manifest(WEASIS_XML.encode())
    assert (manifest.version, manifest.format) == ("2.5", "xml")
    assert manifest.uid == "8a1d6b0e-5c43-4b1e-9f55-2a1d5c7e0b11"
    first, backup = manifest.arc_queries
    assert first.arc_id == "1001" and first.base_url == "http://127.0.0.1:8042/wado"
    assert first.web_login == "dXNlcjpwYXNz" and first.require_only_sop_instance_uid is False
    assert first.additional_parameters == "&session=42&custodian=1.2.3"
    assert first.override_dicom_tags_list == (0x00100010, 0x00100020)
    assert first.query_mode is QueryMode.DICOM and not first.is_dicom_web
    assert [(t.key, t.value) for t in first.http_tags] == [("X-Archive-Token", "t0k3n"), ("X-Site", "north")]
    patient = first.patients[0]
    assert (patient.patient_id, patient.patient_name, patient.issuer_of_patient_id) == ("PAT-1", "DOE^JANE", "HOSP")
    assert (patient.patient_birth_date, patient.patient_sex) == ("19700101", "F")
    study = patient.studies[0]
    assert (study.study_instance_uid, study.accession_number, study.study_id) == (ST, "ACC-9", "7")
    axial, report = study.series
    assert (axial.series_number, axial.modality, axial.wado_compression_rate) == (2, "CT", 80)
    assert axial.wado_transfer_syntax_uid == "1.2.840.10008.1.2.4.50"
    assert [i.instance_number for i in axial.instances] == [1, 2]
    assert report.instances[0].direct_download_file == "/files/report.dcm"
    assert backup.additional_parameters == "&legacy=1"  # the schema's spelling, additionnalParameters
    assert manifest.instance_count() == 4 and not manifest.is_partial


def test_message_for_the_user() -> None:
    manifest = parse_manifest(WEASIS_XML)
    assert manifest.messages == (mf.Message("Partial result", "2 of 3 series are available", Severity.INFO),)
    default = parse_manifest('<manifest xmlns="http://www.weasis.org/xsd/2.5"><arcQuery arcId="a" '
                             'baseUrl=""><Message title="No study" description="Nothing matches '
                             'ACC-1" severity="ERROR"/><Message title="Note" description="later"/>'
                             "</arcQuery></manifest>")
    # an archive with only a message needs no baseUrl: the message is what there is to show
    assert [(m.title, m.severity) for m in default.messages] == [("No study", Severity.ERROR), ("Note", Severity.WARN)]
    assert list(default.wado_requests()) == []


def test_wado_uri_requests_as_weasis_builds_them() -> None:
    requests = list(parse_manifest(WEASIS_XML).wado_requests())
    assert [r.url for r in requests] == [
        f"http://127.0.0.1:8042/wado?requestType=WADO&studyUID={ST}&seriesUID={SE1}&objectUID={SE1}.1"
        "&contentType=application/dicom&transferSyntax=1.2.840.10008.1.2.4.50&imageQuality=80"
        "&session=42&custodian=1.2.3",
        f"http://127.0.0.1:8042/wado?requestType=WADO&studyUID={ST}&seriesUID={SE1}&objectUID={SE1}.2"
        "&contentType=application/dicom&transferSyntax=1.2.840.10008.1.2.4.50&imageQuality=80"
        "&session=42&custodian=1.2.3",
        # DirectDownloadFile: relative to baseUrl, the parameters still appended
        "http://127.0.0.1:8042/wado/files/report.dcm?session=42&custodian=1.2.3",
        # a baseUrl that already has a query continues it with &
        "https://backup.example/wado?archive=b&requestType=WADO&studyUID=1.2.3&seriesUID=1.2.3.4"
        "&objectUID=1.2.3.4.5&contentType=application/dicom&legacy=1",
    ]
    assert {r.protocol for r in requests} == {"WADO-URI"}
    assert (requests[2].study_instance_uid, requests[2].series_instance_uid,
            requests[2].sop_instance_uid) == (ST, SE2, f"{SE2}.1")
    assert dict(requests[0].headers) == {"X-Archive-Token": "t0k3n", "X-Site": "north",
                                         "Authorization": "Basic dXNlcjpwYXNz"}
    assert requests[3].headers == ()


def test_legacy_wado_query_is_still_read() -> None:
    manifest = parse_manifest(LEGACY_XML)
    assert manifest.version == "1"
    (arc,) = manifest.arc_queries
    assert (arc.arc_id, arc.base_url, arc.additional_parameters) == ("", "http://pacs:8080/wado", "&session=7")
    assert arc.override_dicom_tags_list == ()
    (request,) = arc.wado_requests()
    # requireOnlySOPInstanceUID: the study and series UIDs are sent empty
    assert request.url == ("http://pacs:8080/wado?requestType=WADO&studyUID=&seriesUID=&objectUID=1.9.1.1"
                           "&contentType=application/dicom&session=7")
    assert request.headers == (("Cookie", "JSESSIONID=abc"),)


def test_both_spellings_of_additional_parameters() -> None:
    def params(attributes: str) -> str:
        doc = (f'<manifest xmlns="http://www.weasis.org/xsd/2.5"><arcQuery arcId="a" baseUrl="http://h/w" '
               f'{attributes}/></manifest>')
        return parse_manifest(doc).arc_queries[0].additional_parameters

    assert params('additionalParameters="&amp;a=1"') == "&a=1"
    assert params('additionnalParameters="&amp;b=2"') == "&b=2"
    # both: the current spelling wins, as newer Weasis reads only that one
    assert params('additionnalParameters="&amp;b=2" additionalParameters="&amp;a=1"') == "&a=1"
    assert params("") == ""
    json_doc = {"manifest": {"arcQuery": {"baseUrl": "http://h/w", "additionnalParameters": "&c=3"}}}
    assert parse_manifest(json.dumps(json_doc)).arc_queries[0].additional_parameters == "&c=3"


def test_json_and_xml_build_the_same_tree() -> None:
    xml = parse_manifest(VIEWER_HUB_XML)
    from_json = parse_manifest(VIEWER_HUB_JSON)
    assert from_json.format == "json" and xml.format == "xml"
    assert from_json.arc_queries == xml.arc_queries
    series = from_json.arc_queries[0].patients[0].studies[0].series[0]
    assert (series.series_number, series.wado_transfer_syntax_uid) == (13, "*")
    assert [r.url for r in from_json.wado_requests()][0] == (
        "http://pacs/wado?requestType=WADO&studyUID=ST1&seriesUID=SE1&objectUID=IM1"
        "&contentType=application/dicom&transferSyntax=*")


def test_json_levels_may_be_single_objects() -> None:
    doc = {"manifest": {"uid": "u", "arcQuery": {
        "baseUrl": "http://h/wado", "requireOnlySOPInstanceUID": True,
        "httpTag": {"key": "K", "value": "V"},
        "Message": {"title": "T", "description": "D", "severity": "ERROR"},
        "Patient": {"PatientID": "P", "Study": {"StudyInstanceUID": "1.1", "Series": {
            "SeriesInstanceUID": "1.1.1", "Instance": {"SOPInstanceUID": "1.1.1.1", "InstanceNumber": 4}}}}}}}
    manifest = parse_manifest(json.dumps(doc).encode())
    arc = manifest.arc_queries[0]
    assert manifest.uid == "u" and arc.require_only_sop_instance_uid is True
    assert arc.http_tags == (mf.HttpTag("K", "V"),)
    assert arc.messages[0].severity is Severity.ERROR
    assert arc.patients[0].studies[0].series[0].instances == (mf.Instance("1.1.1.1", 4),)


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    gzipped = tmp_path / "manifest.xml"  # gzip under an .xml name
    gzipped.write_bytes(gzip.compress(WEASIS_XML.encode()))
    plain = tmp_path / "manifest.gz"  # plain XML under a .gz name
    plain.write_bytes(WEASIS_XML.encode())
    json_gz = tmp_path / "noextension"
    json_gz.write_bytes(gzip.compress(b"\xef\xbb\xbf  " + VIEWER_HUB_JSON.encode()))
    assert load_manifest(gzipped) == load_manifest(str(plain)) == parse_manifest(WEASIS_XML)
    assert load_manifest(json_gz).format == "json"
    # two gzip members (concatenated files) read as one document
    half = len(WEASIS_XML) // 2
    two = gzip.compress(WEASIS_XML[:half].encode()) + gzip.compress(WEASIS_XML[half:].encode())
    assert parse_manifest(two) == parse_manifest(WEASIS_XML)


def test_gzip_cut_short_or_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    data = gzip.compress(WEASIS_XML.encode())
    with pytest.raises(ManifestError, match="cut short"):
        parse_manifest(data[: len(data) // 2])
    monkeypatch.setattr(mf, "MAX_MANIFEST_BYTES", 1000)
    with pytest.raises(ManifestError, match="inflates past"):
        parse_manifest(gzip.compress(b"<manifest>" + b" " * 5000 + b"</manifest>"))


def test_file_uri_and_fetch(tmp_path: Path) -> None:
    path = tmp_path / "my manifest.xml"
    path.write_text(LEGACY_XML)
    assert load_manifest(path.as_uri()).version == "1"

    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return gzip.compress(VIEWER_HUB_JSON.encode())

    assert load_manifest("https://viewer-hub.example/manifest?id=1", fetch=fetch).format == "json"
    assert asked == ["https://viewer-hub.example/manifest?id=1"]
    with pytest.raises(ManifestError, match="fetch="):
        load_manifest("http://h/mf.xml")
    with pytest.raises(ManifestError, match="cannot read the manifest"):
        load_manifest(tmp_path / "missing.xml")


def test_inline_manifest_base64_of_gzip_and_plain() -> None:
    document = WEASIS_XML.encode()
    expected = parse_manifest(document)
    assert parse_inline_manifest(base64.b64encode(gzip.compress(document)).decode()) == expected
    assert parse_inline_manifest(base64.b64encode(document).decode()) == expected
    assert parse_inline_manifest(base64.urlsafe_b64encode(gzip.compress(document)).decode().rstrip("=")) == expected
    # a "+" left unescaped in a weasis:// URI arrives as a space
    payload = document
    while b"+" not in base64.b64encode(gzip.compress(payload, mtime=0)):
        payload += b" "
    encoded = base64.b64encode(gzip.compress(payload, mtime=0)).decode()
    assert parse_inline_manifest(encoded.replace("+", " ")) == expected
    with pytest.raises(ManifestError, match="not base64"):
        parse_inline_manifest("this is *not* base64!")
    with pytest.raises(ManifestError, match="empty"):
        parse_inline_manifest("   ")


def test_partial_dicom_web_manifest_lists_what_to_complete() -> None:
    body = (
        '<httpTag key="Authorization" value="Bearer xyz"/>'
        '<Patient PatientID="P 1" IssuerOfPatientID="HOSP&amp;X"/>'  # patient level: query its studies
        '<Patient PatientID="P2"><Study StudyInstanceUID="1.2"/>'  # study level: query its series
        '<Study StudyInstanceUID="1.3"><Series SeriesInstanceUID="1.3.1"/>'  # series level
        '<Series SeriesInstanceUID="1.3.2"><Instance SOPInstanceUID="1.3.2.1"/></Series></Study></Patient>'
    )
    manifest = parse_manifest(dicom_web(body))
    arc = manifest.arc_queries[0]
    assert arc.is_dicom_web and manifest.is_partial
    patient, study, series = manifest.partial()
    base = "http://127.0.0.1:8042/dicom-web"
    assert (patient.level, patient.patient_id, patient.base_url) == ("PATIENT", "P 1", base)
    assert patient.qido_url.startswith(f"{base}/studies?00100020=P+1&00100021=HOSP%26X&includefield=00080020,")
    assert (study.level, study.study_instance_uid) == ("STUDY", "1.2")
    assert study.qido_url == f"{base}/studies/1.2/series?includefield=0008103E,00080060,0020000E,00200011,00081190"
    assert study.retrieve_url == f"{base}/studies/1.2"
    assert (series.level, series.study_instance_uid, series.series_instance_uid) == ("SERIES", "1.3", "1.3.1")
    assert series.qido_url == f"{base}/studies/1.3/series/1.3.1/instances"
    assert series.retrieve_url == f"{base}/studies/1.3/series/1.3.1"
    assert dict(series.headers) == {"Authorization": "Bearer xyz", "Accept": "application/dicom+json"}
    # the instance the manifest does list is fetched with WADO-RS from the DICOMweb root
    (request,) = manifest.wado_requests()
    assert request.protocol == "WADO-RS"
    assert request.url == f"{base}/studies/1.3/series/1.3.2/instances/1.3.2.1"


def test_only_dicom_web_manifests_are_partial() -> None:
    body = '<Patient PatientID="P"><Study StudyInstanceUID="1.2"><Series SeriesInstanceUID="1.2.3"/></Study></Patient>'
    dicom = parse_manifest(dicom_web(body).replace('queryMode="DICOM_WEB"', 'queryMode="DICOM"'))
    assert dicom.partial() == () and not dicom.is_partial
    assert parse_manifest(dicom_web(body)).partial()[0].level == "SERIES"
    series_retrieve = parse_manifest(dicom_web(body, extra='seriesRetrieve="true"'))
    assert series_retrieve.arc_queries[0].series_retrieve is True
    assert parse_manifest(dicom_web(body)).arc_queries[0].series_retrieve is None


def test_dicom_web_patient_without_studies_needs_an_id() -> None:
    with pytest.raises(ManifestError, match="needs a PatientID"):
        parse_manifest(dicom_web('<Patient PatientName="NO^ID"/>'))


def test_query_mode_as_weasis_reads_it(caplog: pytest.LogCaptureFixture) -> None:
    def mode(value: str) -> QueryMode:
        doc = (f'<manifest xmlns="http://www.weasis.org/xsd/2.5"><arcQuery arcId="a" baseUrl="http://h/w" '
               f'{value}/></manifest>')
        return parse_manifest(doc).arc_queries[0].query_mode

    assert mode("") is QueryMode.DICOM
    assert mode('queryMode="dicom_web"') is QueryMode.DICOM_WEB
    assert mode('queryMode="DB"') is QueryMode.DB
    with caplog.at_level(logging.WARNING, logger="dicomnb.core.manifest"):
        assert mode('queryMode="WADO"') is QueryMode.DICOM
    assert "unknown queryMode 'WADO'" in caplog.text


def test_multiframe_instance_listed_per_frame_is_fetched_once() -> None:
    body = ('<Patient PatientID="P"><Study StudyInstanceUID="1.2"><Series SeriesInstanceUID="1.2.3">'
            '<Instance SOPInstanceUID="1.2.3.4" InstanceNumber="1"/>'
            '<Instance SOPInstanceUID="1.2.3.4" InstanceNumber="2"/>'
            '<Instance SOPInstanceUID="1.2.3.5" InstanceNumber="x"/></Series></Study></Patient>')
    manifest = parse_manifest(dicom_web(body).replace('queryMode="DICOM_WEB"', ""))
    assert [r.sop_instance_uid for r in manifest.wado_requests()] == ["1.2.3.4", "1.2.3.5"]
    assert manifest.arc_queries[0].patients[0].studies[0].series[0].instances[2].instance_number is None


@pytest.mark.parametrize(("document", "message"), [
    ("<manifest><arcQuery baseUrl='http://h/w'></manifest>", r"not well-formed XML: .* on line 1, column"),
    ('<?xml version="1.0"?>\n<!DOCTYPE manifest [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>\n'
     "<manifest>&b;</manifest>", "DOCTYPE"),
    ("<study xmlns='http://www.weasis.org/xsd/2.5'/>", r"root element is <study>, not a Weasis manifest"),
    ("<manifest xmlns='urn:other'/>", r"namespace 'urn:other', not Weasis's: use xmlns=\"http://www.weasis.org/xsd/2.5\""),
    ("<manifest xmlns='http://www.weasis.org/xsd/3.0'/>", r"manifest version 3.0\), which dicomnb does not read"),
    ("<wado_query xmlns='http://www.weasis.org/xsd/2.5' wadoURL='http://h/w'/>", r"version 2.5\), which dicomnb"),
    ('["manifest"]', r'a JSON manifest is an object \{"manifest"'),
    ('{"arcQuery": []}', r"this one has \['arcQuery'\]"),
    ('{"manifest": {"arcQuery": [}', r"not valid JSON: .* line 1"),
    ("", "empty"),
    ("%PDF-1.4", "neither XML .* nor JSON .* nor gzip"),
])
def test_unreadable_documents(document: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(document)


@pytest.mark.parametrize(("element", "message"), [
    ('<arcQuery arcId="a"><Patient PatientID="P"/></arcQuery>', r"<arcQuery> on line 1 has no baseUrl: give the address"),
    ('<arcQuery arcId="a" baseUrl="ftp://h/w"><Patient PatientID="P"/></arcQuery>', "must be an http:// or https:// URL"),
    ('<arcQuery arcId="a" baseUrl="http://h/w"><Patient PatientID="P">\n<Study/></Patient></arcQuery>',
     r"<Study> on line 2 has no StudyInstanceUID"),
    ('<arcQuery arcId="a" baseUrl="http://h/w"><Patient><Study StudyInstanceUID="1">\n\n'
     "<Series/></Study></Patient></arcQuery>", r"<Series> on line 3 has no SeriesInstanceUID"),
    ('<arcQuery arcId="a" baseUrl="http://h/w"><Patient><Study StudyInstanceUID="1"><Series SeriesInstanceUID="2">'
     '<Instance InstanceNumber="1"/></Series></Study></Patient></arcQuery>', r"<Instance> on line 1 has no SOPInstanceUID"),
])
def test_missing_required_attributes(element: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message) as caught:
        parse_manifest(f'<manifest xmlns="http://www.weasis.org/xsd/2.5">{element}</manifest>')
    assert isinstance(caught.value, InputError)


def test_missing_attributes_in_json_say_where() -> None:
    doc = {"manifest": {"arcQuery": [{"baseUrl": "http://h/w", "Patient": [{"Study": [
        {"StudyInstanceUID": "1"}, {"StudyDescription": "no uid"}]}]}]}}
    with pytest.raises(ManifestError, match=r"manifest\.arcQuery\[0\]\.Patient\[0\]\.Study\[1\] has no StudyInstanceUID"):
        parse_manifest(json.dumps(doc))
    no_base = {"manifest": {"arcQuery": [{"arcId": "x", "Patient": [{"PatientID": "P"}]}]}}
    with pytest.raises(ManifestError, match=r"manifest\.arcQuery\[0\] has no baseUrl"):
        parse_manifest(json.dumps(no_base))


def test_override_dicom_tags_list_takes_the_patients_then_the_studys_values() -> None:
    xml = WEASIS_XML.replace(
        'overrideDicomTagsList="0x00100010,0x00100020"',
        # PatientName, PatientID, StudyDescription, AccessionNumber (hex, decimal and Java's "#"),
        # StudyInstanceUID (never), Modality and PatientBirthTime (no value in the manifest)
        'overrideDicomTagsList="0x00100010, 0x00100020,0x00081030,524368,#0020000D,0x00080060,0x00100032,junk"')
    arc = parse_manifest(xml.encode()).arc_queries[0]
    assert arc.override_dicom_tags_list == (0x00100010, 0x00100020, 0x00081030, 0x00080050, 0x0020000D,
                                            0x00080060, 0x00100032)
    patient = arc.patients[0]
    assert arc.overrides(patient, patient.studies[0]) == {
        "PatientName": "DOE^JANE", "PatientID": "PAT-1", "StudyDescription": "CT chest", "AccessionNumber": "ACC-9"}
    # a patient without its study (a DICOM_WEB manifest stopping at the patient): the patient's values alone
    assert arc.overrides(patient) == {"PatientName": "DOE^JANE", "PatientID": "PAT-1"}
    # no list: nothing is overridden
    assert parse_manifest(xml.encode()).arc_queries[1].overrides(parse_manifest(xml.encode()).patients[1]) == {}


def test_overrides_are_text_attributes_named_by_keyword() -> None:
    from dicomnb.core.overrides import check_overrides

    assert check_overrides({"PatientName": "Doe^Jane", "SeriesNumber": 4, "StudyDescription": None}) == (
        ("PatientName", "Doe^Jane"), ("SeriesNumber", "4"), ("StudyDescription", ""))
    assert check_overrides(None) == ()
    for bad, why in [({"Patient Name": "x"}, "not a DICOM keyword"),
                     ({"SOPInstanceUID": "1.2"}, "UIDs identify"),
                     ({"StudyInstanceUID": "1.2"}, "UIDs identify"),
                     ({"Rows": "4"}, "only text attributes"),
                     ({"NumberOfFrames": "4"}, "only text attributes"),
                     ({"ReferencedImageSequence": "x"}, "only text attributes"),
                     ({"SeriesNumber": "four"}, "whole number"),
                     ({"PatientName": ["a"]}, "must be text")]:
        with pytest.raises(InputError, match=why):
            check_overrides(bad)
