"""Write notebooks/dicomweb.ipynb (kept as code so that its cells are reviewed like code)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# DICOMweb: search with QIDO-RS, retrieve with WADO-RS\n\n"
        "Archives that speak HTTP (Orthanc's DICOMweb plugin, dcm4chee, Google's and Azure's health "
        "APIs...) are searched with **QIDO-RS** and retrieved with **WADO-RS**. dicomnb uses the same "
        "search criteria as for a DIMSE archive, and the same download manager.\n\n"
        "This notebook needs a DICOMweb archive: Orthanc, found through `DICOMNB_ORTHANC_HTTP` "
        "(`http://127.0.0.1:8042`; its DICOMweb root is `/dicom-web`). On Binder, `binder/start` "
        "runs one, loaded with pydicom's sample files; elsewhere `python binder/start_orthanc.py "
        "start` does, and prints the variables to set. Without it, the notebook says so and every "
        "cell below does nothing."
    ),
    new_code_cell(
        "import os\n"
        "import tempfile\n\n"
        "import dicomnb\n\n"
        "# A store of this notebook's own, so that each run fetches everything afresh.\n"
        'dicomnb.settings.cache_dir = tempfile.mkdtemp(prefix="dicomnb-dicomweb-")\n\n'
        'http = os.environ.get("DICOMNB_ORTHANC_HTTP")  # e.g. http://127.0.0.1:8042\n'
        "if http:\n"
        '    web = dicomnb.add_node("orthanc-web", dicomweb=f"{http}/dicom-web", replace=True)\n'
        '    print(f"{web.url} answers QIDO-RS in {dicomnb.echo(\'orthanc-web\') * 1000:.0f} ms")\n'
        "else:\n"
        "    web = None\n"
        '    print("No DICOMweb archive here: DICOMNB_ORTHANC_HTTP is not set, so this notebook stops here. "\n'
        '          "Start Orthanc with `python binder/start_orthanc.py start` and set the variables it prints.")'
    ),
    new_markdown_cell(
        "A node can carry headers and an authentication (`auth=\"basic\"` with `user=` or "
        "`auth=\"bearer\"`); the password or token is read from an environment variable "
        "(`secret_env=`) or asked for once with `dicomnb.set_secret(name)`, and never written to "
        "the node file.\n\n"
        "## Search studies\n\n"
        "`limit` is the page size; `page=2` sends `offset=limit` to the server. `result.limited` says a "
        "next page exists."
    ),
    new_code_cell(
        "if web:\n"
        '    first = dicomnb.query("orthanc-web", limit=5)\n'
        '    second = dicomnb.query("orthanc-web", limit=5, page=2)\n'
        '    print(first.message, "| next page:", first.limited)\n'
        '    display(second.frame[["PatientName", "StudyDate", "ModalitiesInStudy", "NumberOfStudyRelatedInstances"]])'
    ),
    new_markdown_cell(
        "Criteria as in the dialog: wildcards, modalities, dates. Orthanc 1.10 does not decode "
        "percent-encoded query strings, so dicomnb writes `*` and `^` as they are and filters the "
        "rows itself where the server cannot: wildcard and non-ASCII names really match."
    ),
    new_code_cell(
        "if web:\n"
        '    peter = dicomnb.query("orthanc-web", patient_name="Doe^P*", modalities=("MR",))\n'
        "    print(peter.message)\n"
        '    display(peter.frame[["PatientName", "StudyDate", "StudyDescription", "NumberOfStudyRelatedSeries",\n'
        '                         "NumberOfStudyRelatedInstances", "StudyInstanceUID"]])\n'
        '    for name in ["Люк*", "김*", "*XiaoDong*"]:\n'
        '        print(name, "→", [str(row["PatientName"]) for row in dicomnb.query("orthanc-web", patient_name=name).rows])'
    ),
    new_markdown_cell("## Series and instances of a study"),
    new_code_cell(
        "if web:\n"
        '    mra = max(peter.rows, key=lambda row: int(row["NumberOfStudyRelatedInstances"]))["StudyInstanceUID"]\n'
        '    series = dicomnb.query("orthanc-web", level="series", study_uid=mra)\n'
        '    display(series.frame[["SeriesNumber", "Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances"]])\n'
        '    largest = max(series.rows, key=lambda row: int(row["NumberOfSeriesRelatedInstances"]))\n'
        '    images = dicomnb.query("orthanc-web", level="image", study_uid=mra, series_uid=largest["SeriesInstanceUID"])\n'
        '    display(images.frame[["InstanceNumber", "Rows", "Columns", "SOPInstanceUID"]])'
    ),
    new_markdown_cell(
        "## Retrieve with WADO-RS, with per-series progress\n\n"
        "The study's series are listed (QIDO-RS) and each becomes a download job as soon as it is "
        "listed; instances come four at a time per series, first, last and middle first so that a "
        "preview is ready early. The panel shows a bar per series while it runs (on this small study, "
        "for an instant); `subscribe` hands the same progress to your code: per series, done/total, "
        "bytes, rate and time left."
    ),
    new_code_cell(
        "if web:\n"
        "    per_series = {}  # series → the states its job went through, in order\n\n"
        "    def note(statuses):\n"
        "        for job in statuses:\n"
        "            states = per_series.setdefault(job.description, [])\n"
        "            if not states or states[-1] != job.text:\n"
        "                states.append(job.text)\n\n"
        "    unsubscribe = dicomnb.downloads.subscribe(lambda report: note(report.jobs))\n"
        "    display(dicomnb.downloads.panel())\n"
        '    result = dicomnb.retrieve("orthanc-web", mra)\n'
        "    unsubscribe()\n"
        "    note(dicomnb.downloads())  # where each job ended\n"
        "    print(result.message)\n"
        "    for description, states in per_series.items():\n"
        '        print(f"{description:<35}", " → ".join(states))'
    ),
    new_markdown_cell(
        "The retrieved instances are in the catalog (source `dicomweb`), and in the store: "
        "`dicomnb.show` opens a series as a stack."
    ),
    new_code_cell(
        "if web:\n"
        '    display(dicomnb.catalog.series[["SeriesNumber", "SeriesDescription", "Modality", "NumberOfSeriesRelatedInstances"]])\n'
        '    print(sorted(set(dicomnb.catalog.instances.source)))\n'
        '    display(dicomnb.show(largest["SeriesInstanceUID"]))'
    ),
    new_markdown_cell(
        "## From a shell\n\n"
        "```\n"
        "dicomnb node add web --dicomweb http://127.0.0.1:8042/dicom-web\n"
        "dicomnb query web --patient-name 'Doe*' --limit 10 --page 2 --json\n"
        "dicomnb retrieve web --study UID --method wado-rs --dest DIR --json\n"
        "```"
    ),
]

notebook = new_notebook(cells=cells, metadata={
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
})
nbformat.write(notebook, Path(__file__).with_name("dicomweb.ipynb"))
