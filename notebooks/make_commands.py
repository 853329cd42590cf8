"""Write notebooks/commands.ipynb (kept as code so that its cells are reviewed like code)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# Weasis commands, weasis:// links and manifests\n\n"
        "The Weasis viewer is opened from a RIS, an EHR or a PACS web page by a link such as "
        "`weasis://?$dicom:get -w https://pacs/weasis/manifest?studyUID=...`, or by commands typed "
        "in its console. dicomnb reads the same commands and links, so what was written for Weasis "
        "works in a notebook:\n\n"
        "- `dicomnb.run(\"$dicom:get -l /data $dicom:close -a\")`: commands as text;\n"
        "- `dicomnb.open_uri(\"weasis://?...\")`: a link, URL-decoded, split on `$`, each command run "
        "in order;\n"
        "- `dicomnb open 'weasis://?...' --json` in a shell.\n\n"
        "The local commands run on pydicom's sample files. The manifests are retrieved from Orthanc "
        "when one runs (`DICOMNB_ORTHANC_HTTP`, set on Binder); otherwise the notebook says why they "
        "cannot be, and uses the demo archive instead."
    ),
    new_code_cell(
        "import base64\n"
        "import gzip\n"
        "import json\n"
        "import os\n"
        "import pathlib\n"
        "import sys\n"
        "import tempfile\n"
        "import xml.etree.ElementTree as ET\n"
        "from urllib.parse import quote\n\n"
        "import matplotlib.image\n"
        "import numpy as np\n"
        "import pydicom\n\n"
        "import dicomnb\n"
        "from dicomnb.core.manifest import load_manifest\n\n"
        "# A store of this notebook's own, so that each run fetches everything afresh; the shell\n"
        "# commands below use it too (DICOMNB_CACHE_DIR).\n"
        'os.environ["DICOMNB_CACHE_DIR"] = tempfile.mkdtemp(prefix="dicomnb-commands-")\n'
        'dicomnb.settings.cache_dir = os.environ["DICOMNB_CACHE_DIR"]\n'
        "samples = dicomnb.sample_data()  # pydicom's bundled test files\n"
        'work = pathlib.Path(tempfile.mkdtemp(prefix="dicomnb-commands-files-"))'
    ),
    new_markdown_cell(
        "## `$dicom:get -l`: local files and folders\n\n"
        "Each `-l` is a file or a folder (read recursively; ZIPs and DICOMDIR discs found there are "
        "read as such). Paths with spaces are quoted as in a shell. The other sources of "
        "`$dicom:get`: `-z` a DICOM ZIP (file or URL), `-r` a DICOM file by URL (WADO-URI), `-w` a "
        "manifest (file or URL), `-i` an inline manifest, `-p` the portable folders beside the "
        "working directory."
    ),
    new_code_cell(
        'text = f\'$dicom:get -l "{samples / "CT_small.dcm"}" -l "{samples / "dicomdirtests" / "98892001"}"\'\n'
        "(got,) = dicomnb.run(text)\n"
        "print(got.summary())\n"
        'got.to_json()["counts"]  # to_json(): the object `dicomnb get --json` prints'
    ),
    new_markdown_cell(
        "## A weasis:// link: several commands, in order\n\n"
        "A web page writes the commands URL-encoded after `weasis://?`. The whole link is parsed "
        "before anything runs; then each command runs in turn: here two folders are opened, one "
        "patient is closed again, and a picture is added."
    ),
    new_code_cell(
        'picture = work / "key-image.png"\n'
        "matplotlib.image.imsave(picture, np.linspace(0, 1, 32 * 32).reshape(32, 32), cmap='gray')\n\n"
        'commands = (f\'$dicom:get -l "{samples / "dicomdirtests" / "77654033"}" -l "{samples / "MR_small.dcm"}" \'\n'
        "            '$dicom:close -p 77654033 '\n"
        '            f\'$image:get -f "{picture}"\')\n'
        'uri = "weasis://?" + quote(commands, safe="")\n'
        'print(uri[:110] + "...")\n'
        "for result in dicomnb.open_uri(uri):\n"
        '    print(f"${result.name:<11}", " | ".join(result.summary().splitlines()[:2]))'
    ),
    new_code_cell(
        'print(len(dicomnb.catalog.images), "picture:", list(dicomnb.catalog.images.path.map(lambda p: pathlib.Path(p).name)))\n'
        'dicomnb.catalog.patients[["PatientName", "PatientID", "NumberOfPatientRelatedInstances"]]'
    ),
    new_markdown_cell(
        "An unknown command or option runs nothing, and the error names what is supported:"
    ),
    new_code_cell(
        "try:\n"
        "    dicomnb.run(f'$dicom:get -l \"{samples}\" $dicom:show -x')\n"
        "except dicomnb.errors.CommandError as exc:\n"
        '    print("CommandError:", exc)'
    ),
    new_markdown_cell(
        "## `$dicom:close`\n\n"
        "`-p PATIENT_ID`, `-y STUDY_UID`, `-s SERIES_UID` or `-a` (all): out of the catalog, and their "
        "downloads stopped (the files stay in the store)."
    ),
    new_code_cell(
        'ct_study = dicomnb.catalog.studies.query("PatientName == \'CompressedSamples^CT1\'").StudyInstanceUID.iloc[0]\n'
        'for result in dicomnb.run(f"$dicom:close -y {ct_study} $dicom:close -a"):\n'
        "    print(result.summary(), result.to_json()[\"closed\"][\"instances\"])\n"
        'print("left in the catalog:", len(dicomnb.catalog), "instances")'
    ),
    new_markdown_cell(
        "## Manifests\n\n"
        "A manifest is the list a PACS's web page hands Weasis: per archive (`arcQuery`, with the "
        "`baseUrl` to fetch from), the patients, studies, series and instances to retrieve, and "
        "perhaps a `Message` for the user. It comes as XML (namespace "
        "`http://www.weasis.org/xsd/2.5`) or as JSON of the same shape, gzipped or not.\n\n"
        "Here we write both, listing instances an archive holds: Orthanc's (listed with QIDO-RS) "
        "when it runs, the demo archive's otherwise."
    ),
    new_code_cell(
        'http = os.environ.get("DICOMNB_ORTHANC_HTTP")  # e.g. http://127.0.0.1:8042\n'
        "if http:\n"
        '    dicomnb.add_node("orthanc-web", dicomweb=f"{http}/dicom-web", replace=True)\n'
        '    listed_from, wado = "orthanc-web", f"{http}/wado"  # Orthanc\'s WADO-URI service\n'
        "else:\n"
        "    archive = dicomnb.demo()\n"
        '    listed_from, wado = "demo", "http://127.0.0.1:8042/wado"  # where Binder\'s Orthanc would answer\n'
        'studies = {row["StudyDate"]: row for row in dicomnb.query(listed_from, patient_name="Doe^Archibald").rows}\n'
        'cr, ct = studies["20010101"], studies["19950903"]  # Doe^Archibald\'s CR and CT studies\n'
        'print(f"listed from {listed_from}; fetched from {wado}")'
    ),
    new_code_cell(
        "def series_of(study):\n"
        '    """The study\'s instances on the archive, series by series: {series UID: [rows]}."""\n'
        "    found = {}\n"
        '    for row in dicomnb.find_instances(listed_from, study["StudyInstanceUID"]):\n'
        '        found.setdefault(row["SeriesInstanceUID"], []).append(row)\n'
        "    return found\n\n"
        "# XML: Doe^Archibald's CR study, with a message for the user\n"
        'root = ET.Element("manifest", xmlns="http://www.weasis.org/xsd/2.5")\n'
        'arc = ET.SubElement(root, "arcQuery", arcId="orthanc", baseUrl=wado)\n'
        'ET.SubElement(arc, "Message", title="Spine X-rays", description="3 views, sent by the PACS", severity="INFO")\n'
        'patient = ET.SubElement(arc, "Patient", PatientID=str(cr["PatientID"]), PatientName=str(cr["PatientName"]))\n'
        'study = ET.SubElement(patient, "Study", StudyInstanceUID=cr["StudyInstanceUID"])\n'
        "for series_uid, rows in series_of(cr).items():\n"
        '    series = ET.SubElement(study, "Series", SeriesInstanceUID=series_uid, Modality="CR")\n'
        "    for row in rows:\n"
        '        ET.SubElement(series, "Instance", SOPInstanceUID=row["SOPInstanceUID"])\n'
        'xml_manifest = work / "manifest.xml"\n'
        'xml_manifest.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))\n\n'
        "# JSON: Doe^Archibald's CT study\n"
        "json_series = [{\"SeriesInstanceUID\": uid, \"Modality\": \"CT\",\n"
        "                \"Instance\": [{\"SOPInstanceUID\": row[\"SOPInstanceUID\"]} for row in rows]}\n"
        "               for uid, rows in series_of(ct).items()]\n"
        'json_manifest = work / "manifest.json"\n'
        'json_manifest.write_text(json.dumps({"manifest": {"arcQuery": [{\n'
        '    "arcId": "orthanc", "baseUrl": wado,\n'
        '    "Patient": [{"PatientID": str(ct["PatientID"]), "PatientName": str(ct["PatientName"]),\n'
        '                 "Study": [{"StudyInstanceUID": ct["StudyInstanceUID"], "Series": json_series}]}]}]}}, indent=1))\n'
        "print(xml_manifest.read_text()[:400], \"...\")"
    ),
    new_markdown_cell(
        "Reading a manifest needs no network: `load_manifest` gives its patients, studies, series "
        "and instances, and the WADO-URI request Weasis would send for each instance."
    ),
    new_code_cell(
        "for path in (xml_manifest, json_manifest):\n"
        "    manifest = load_manifest(path)\n"
        "    patient = manifest.patients[0]\n"
        '    print(f"{path.name}: {manifest.format}, version {manifest.version}, {patient.patient_name}, "\n'
        '          f"{len(patient.studies[0].series)} series, {manifest.instance_count()} instances")\n'
        "print(next(manifest.wado_requests()).url)"
    ),
    new_markdown_cell(
        "### Retrieve them\n\n"
        "`$dicom:get -w` takes a manifest's file or URL (a URL is fetched, gzip told by content); "
        "`dicomnb.retrieve_manifest` is the same from Python, with `progress=` and `cancel=`; "
        "`$dicom:get -i` takes the manifest inline, as base64 of its gzip. Each series becomes a download "
        "job (`dicomnb.downloads`: pause, resume, retry the missing), and an instance the store holds "
        "is not fetched twice."
    ),
    new_code_cell(
        "if http:\n"
        "    (from_xml,) = dicomnb.run(f'$dicom:get -w \"{xml_manifest}\"')\n"
        '    print("-w:", from_xml.summary().splitlines()[0], "| retrieved:", from_xml.retrieved)\n'
        '    print("   messages:", [f"{m.title}: {m.description}" for m in from_xml.messages])\n'
        "    seen = []\n"
        "    from_json = dicomnb.retrieve_manifest(json_manifest, progress=lambda done, total: seen.append((done, total)))\n"
        '    print("retrieve_manifest:", from_json.message, "| progress:", seen[-1])\n'
        "    inline = base64.b64encode(gzip.compress(xml_manifest.read_bytes())).decode()\n"
        '    (from_inline,) = dicomnb.run(f"$dicom:get -i {inline}")\n'
        '    print("-i:", from_inline.summary().splitlines()[0], "| retrieved:", from_inline.retrieved)\n'
        '    display(dicomnb.downloads.frame[["description", "node", "method", "state", "total"]])\n'
        "else:\n"
        '    print("No Orthanc here (DICOMNB_ORTHANC_HTTP is not set). A manifest points at an HTTP archive "\n'
        '          "(WADO-URI or DICOMweb), and the demo archive speaks DIMSE only, so these manifests cannot "\n'
        '          "be retrieved here; a manifest of local files does not exist (that is what -l is for). "\n'
        '          "What they list, the demo archive gives with C-GET: into a folder here, which "\n'
        '          "$dicom:get -l then opens.")\n'
        '    folder = work / "from-demo"\n'
        "    for study in (cr, ct):\n"
        '        print(dicomnb.retrieve("demo", study["StudyInstanceUID"], dest=folder).message)\n'
        "    dicomnb.catalog.clear()\n"
        "    (got,) = dicomnb.run(f'$dicom:get -l \"{folder}\"')\n"
        "    print(got.summary())"
    ),
    new_markdown_cell(
        "### Values from the manifest: `overrideDicomTagsList`\n\n"
        "A portal may know the patient by another name or ID than the archive's files carry. The tags "
        "its manifest lists in `overrideDicomTagsList` take the manifest's Patient values, else its "
        "Study values, as in Weasis. dicomnb shows them in the catalog and in every dataset read "
        "through it, and keeps the files exactly as the archive sent them. Here the CR study again, "
        "with the portal's name for the patient and its own study description."
    ),
    new_code_cell(
        "uid = cr[\"StudyInstanceUID\"]\n"
        "portal = (xml_manifest.read_text()\n"
        "          .replace(\"<arcQuery \", '<arcQuery overrideDicomTagsList=\"0x00100010,0x00081030\" ', 1)\n"
        "          .replace(f'PatientName=\"{cr[\"PatientName\"]}\"', 'PatientName=\"Portal^Archie\"')\n"
        "          .replace(f'StudyInstanceUID=\"{uid}\"', f'StudyInstanceUID=\"{uid}\" StudyDescription=\"Spine, 3 views\"'))\n"
        "portal_manifest = work / \"portal.xml\"\n"
        "portal_manifest.write_text(portal)\n"
        "manifest = load_manifest(portal_manifest)\n"
        "patient = manifest.patients[0]\n"
        "print(\"shown in place of the files' values:\", manifest.arc_queries[0].overrides(patient, patient.studies[0]))\n"
        "if http:\n"
        "    result = dicomnb.retrieve_manifest(portal_manifest)\n"
        "    print(result.message)\n"
        "    display(dicomnb.catalog.studies.query(\"StudyInstanceUID == @uid\")[[\"PatientName\", \"StudyDescription\"]])\n"
        "    print(\"the file itself:\", pydicom.dcmread(result.instances[0].path).PatientName)"
    ),
    new_markdown_cell(
        "### `$dicom:rs`: find and retrieve over DICOMweb\n\n"
        "`$dicom:rs -u URL -r \"studyUID=...\"` (or `patientID`, `accessionNumber`, `seriesUID`, "
        "`objectUID`) searches the DICOMweb service with QIDO-RS and retrieves what it finds with "
        "WADO-RS; `-H 'Name: value'` adds a header. Here it goes into a `weasis://` link opened "
        "from a shell: `dicomnb open URI --json` prints the same JSON as `dicomnb get --json`, with "
        "`commands` holding each command's own."
    ),
    new_code_cell(
        'commands = f\'$dicom:get -l "{samples / "MR_small.dcm"}"\'\n'
        "if http:\n"
        '    brain = dicomnb.query("orthanc-web", patient_name="Doe^Peter", study_description="Brain").rows[0]\n'
        '    commands += f\' $dicom:rs -u {http}/dicom-web -r "studyUID={brain["StudyInstanceUID"]}"\'\n'
        'shell_uri = "weasis://?" + quote(commands, safe="")\n'
        'opened = work / "opened.json"\n'
        "python = sys.executable  # this kernel's Python, where dicomnb is installed: `dicomnb open` in a terminal"
    ),
    new_code_cell(
        "!{python} -m dicomnb open '{shell_uri}' --json > {opened}; echo \"exit status $?\""
    ),
    new_code_cell(
        "opened_json = json.loads(opened.read_text())\n"
        'print("counts:", opened_json["counts"])\n'
        'print("retrieved:", opened_json["retrieved"], "| commands:", [c["command"] for c in opened_json["commands"]])'
    ),
    new_markdown_cell(
        "A shell runs the link the same way: `dicomnb open 'weasis://?...'` prints a summary "
        "(exit status 0; 2 for a bad command, 3 for a ZIP password, 4 for a network failure, 5 "
        "when instances did not arrive)."
    ),
]

notebook = new_notebook(cells=cells, metadata={
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
})
nbformat.write(notebook, Path(__file__).with_name("commands.ipynb"))
