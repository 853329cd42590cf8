"""Write notebooks/pacs.ipynb (kept as code so that its cells are reviewed like code)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# Query and retrieve from a PACS\n\n"
        "dicomnb searches an archive (C-FIND) and retrieves studies (C-GET, C-MOVE, WADO-URI) into a "
        "local store and the catalog, as download jobs you can watch, pause, resume and retry.\n\n"
        "1. **The demo archive**, which needs nothing installed: `dicomnb.demo()` starts pynetdicom's "
        "Q/R SCP on 127.0.0.1, loaded with pydicom's sample files.\n"
        "2. **Orthanc**, when one runs: the notebook finds it through the environment variables "
        "`DICOMNB_ORTHANC_DIMSE` (`AET@host:port`) and `DICOMNB_ORTHANC_HTTP` "
        "(`http://127.0.0.1:8042`). On Binder, `binder/start` runs one with the same sample files; "
        "elsewhere `python binder/start_orthanc.py start` does, and prints the variables to set. "
        "Without them that part says so and is skipped.\n\n"
        "Nothing here leaves the machine: every archive listens on 127.0.0.1."
    ),
    new_code_cell(
        "import os\n"
        "import tempfile\n"
        "import threading\n\n"
        "import dicomnb\n"
        "from dicomnb.core.nodes import NodeStore\n\n"
        "# A store of this notebook's own, so that each run fetches everything afresh (the store never\n"
        "# fetches an instance it holds). Leave this line out to keep what you retrieve.\n"
        'dicomnb.settings.cache_dir = tempfile.mkdtemp(prefix="dicomnb-pacs-")\n\n'
        "# For a C-MOVE the archive connects back to dicomnb's Storage SCP: the calling node.\n"
        'print("calling node (C-MOVE destination):", NodeStore.load().calling)'
    ),
    new_markdown_cell(
        "## 1. The demo archive\n\n"
        "`dicomnb.demo()` starts the archive in a child process of this kernel and saves it as the "
        "node `demo` (AE title `DEMO`). It stops with the kernel, or with `dicomnb.demo.stop()`. A "
        "real archive is saved the same way: `dicomnb.add_node(\"pacs\", aet=..., host=..., port=...)`."
    ),
    new_code_cell("archive = dicomnb.demo()\narchive"),
    new_markdown_cell(
        "### Search with criteria\n\n"
        "The fields of a viewer's search form, as keywords: `patient_name`, `patient_id`, "
        "`accession_number`, `study_description`, `referring_physician_name`, with `*` and `?` "
        "wildcards; `modalities`; a date range (`date_from`, `date_to`) or a named `period` "
        "(`\"today\"`, `\"last-week\"`...). Each match is a row of `result.frame`, with DICOM keywords "
        "as columns."
    ),
    new_code_cell(
        'does = dicomnb.query("demo", patient_name="Doe*")\n'
        "print(does.message)\n"
        'does.frame[["PatientName", "PatientID", "StudyDate", "AccessionNumber", "StudyInstanceUID"]]'
    ),
    new_markdown_cell(
        "Criteria combine. This archive does not return ModalitiesInStudy, so dicomnb checks the "
        "series of each study itself, and says so. `limit` stops after so many matches (it is also "
        "the page size: `page=2` gives the next ones)."
    ),
    new_code_cell(
        'peter_mr = dicomnb.query("demo", patient_name="Doe^Peter", modalities=("MR",),\n'
        '                         date_from="2003-01-01", date_to="2003-12-31")\n'
        "print(peter_mr.message)\n"
        'print(dicomnb.query("demo", limit=5).message)\n'
        'peter_mr.frame[["PatientName", "StudyDate", "AccessionNumber", "StudyInstanceUID"]]'
    ),
    new_markdown_cell(
        "A search can be saved as a preset and used again by name (the dialog's presets are the same):"
    ),
    new_code_cell(
        'dicomnb.presets().save("Doe MR 2003", dicomnb.SearchCriteria(patient_name="Doe*", modalities=("MR",),\n'
        '                                                             date_from="2003-01-01", date_to="2003-12-31"))\n'
        'print(dicomnb.query("demo", preset="Doe MR 2003").message)\n'
        '# A search with no criteria at all applies the preset chosen last, as in the dialog: back to none.\n'
        'dicomnb.presets().choose("Empty");'
    ),
    new_markdown_cell(
        "### Series and instances of a study\n\n"
        "`level=\"series\"` lists a study's series, `level=\"image\"` a series' instances; "
        "`find_instances` lists every instance of a study, as a retrieve will."
    ),
    new_code_cell(
        "sizes = {row[\"StudyInstanceUID\"]: len(dicomnb.find_instances(\"demo\", row[\"StudyInstanceUID\"]))\n"
        "         for row in peter_mr.rows}\n"
        "mra = max(sizes, key=sizes.get)  # the largest of Doe^Peter's MR studies\n"
        'series = dicomnb.query("demo", level="series", study_uid=mra)\n'
        'print(f"{sizes[mra]} instances in {len(series.rows)} series")\n'
        'series.frame[["SeriesNumber", "Modality", "SeriesInstanceUID"]]'
    ),
    new_code_cell(
        'first = series.rows[0]["SeriesInstanceUID"]\n'
        'dicomnb.query("demo", level="image", study_uid=mra, series_uid=first).frame[\n'
        '    ["InstanceNumber", "SOPInstanceUID"]]'
    ),
    new_markdown_cell(
        "### Retrieve with C-GET and C-MOVE\n\n"
        "- **C-GET** fetches on the association dicomnb opens: nothing to set up on the archive.\n"
        "- **C-MOVE** asks the archive to send the instances to a destination it knows: here dicomnb's "
        "own Storage SCP, which listens while the retrieve runs (the calling node printed above; "
        "`dicomnb.demo()` tells the demo archive about it).\n\n"
        "Each instance is written atomically into the store, filed into the catalog (source `dimse`, "
        "origin the node) and checked against what the archive listed."
    ),
    new_code_cell(
        'archibald = [row for row in does.rows if str(row["PatientName"]) == "Doe^Archibald"]\n'
        'for row, method in zip(archibald, ["c-get", "c-move"], strict=True):\n'
        '    result = dicomnb.retrieve("demo", row["StudyInstanceUID"], method=method)\n'
        "    print(result.message)\n"
        'dicomnb.catalog.instances[["PatientName", "StudyDate", "Modality", "SeriesNumber", "InstanceNumber", '
        '"source", "origin"]]'
    ),
    new_code_cell(
        'ct = dicomnb.catalog.series.query("Modality == \'CT\'").iloc[0]\n'
        "dicomnb.show(ct)  # the retrieved CT series, as a stack"
    ),
    new_markdown_cell(
        "## The download manager\n\n"
        "Every retrieve runs as download jobs, one per series, three series at a time. "
        "`dicomnb.downloads` lists them (a table in a notebook: state, done/total, missing). Their "
        "state is saved beside the store, so a retrieve interrupted by a pause, a network error or a "
        "kernel restart is finished later, fetching only what is missing; `dicomnb downloads` in a "
        "shell shows the same jobs."
    ),
    new_code_cell("dicomnb.downloads"),
    new_markdown_cell(
        "### Pause\n\n"
        "A `cancel` event given to `retrieve` pauses its jobs when set: a C-GET or C-MOVE sends "
        "C-CANCEL and keeps what arrived. Here it is set as soon as the first instance lands, one "
        "series at a time, so the other series stay paused before they start "
        "(`dicomnb.downloads.pause()` does the same for every running job).\n\n"
        "The study is retrieved through a node `pacs` of our own that names the same archive: "
        "it stays when the demo archive stops, which the next step needs."
    ),
    new_code_cell(
        'pacs = dicomnb.add_node("pacs", aet=archive.node.aet, host=archive.node.host, port=archive.port, replace=True)\n'
        "cancel = threading.Event()\n"
        "seen = []  # progress over the whole study: (done, total)\n\n"
        "def progress(done, total):\n"
        "    seen.append((done, total))\n"
        "    cancel.set()  # pause once the first instance is in\n\n"
        "dicomnb.downloads.series_parallel = 1\n"
        'paused = dicomnb.retrieve("pacs", mra, cancel=cancel, progress=progress)\n'
        "dicomnb.downloads.series_parallel = 3\n"
        "print(paused.message)\n"
        'dicomnb.downloads.frame.query("node == \'pacs\'")[["description", "state", "done", "total", "missing"]]'
    ),
    new_markdown_cell(
        "### Resume after the archive went away, then retry the missing\n\n"
        "The archive stops while the download is paused. `resume()` starts the jobs again; they "
        "cannot connect, and end `incomplete` with the network error. Once the archive is back "
        "(on the same port), `retry_missing()` fetches what is missing, and only that."
    ),
    new_code_cell(
        "dicomnb.demo.stop()\n"
        "resumed = dicomnb.downloads.resume()\n"
        "dicomnb.downloads.wait(resumed)\n"
        "for job in dicomnb.downloads():\n"
        '    if job.node == "pacs":\n'
        '        print(f"{job.description:<7} {job.text:<24} {job.error}")'
    ),
    new_markdown_cell(
        "`dicomnb.downloads.panel()` is the download panel of the import dialog: a bar per series, "
        "pause/resume and cancel, and **Download the missing files again**. "
        "`dicomnb.downloads.subscribe(listener)` gives the same progress to your own code: every "
        "job's state, done/total, bytes, rate and time left, ten times a second at most."
    ),
    new_code_cell(
        "archive = dicomnb.demo.start(port=pacs.port)  # the archive is back\n"
        "reports = []\n"
        "unsubscribe = dicomnb.downloads.subscribe(reports.append)\n"
        "display(dicomnb.downloads.panel())\n"
        "retried = dicomnb.downloads.retry_missing()\n"
        "dicomnb.downloads.wait(retried)\n"
        "unsubscribe()\n"
        'print(f"{len(retried)} jobs retried; progress of the retrieve: {seen[0]} ... {seen[-1]}; "\n'
        '      f"{len(reports)} reports to subscribers")\n'
        'dicomnb.downloads.frame.query("node == \'pacs\'")[["description", "state", "done", "total", "bytes"]]'
    ),
    new_markdown_cell(
        "Jobs stay listed until cleared: `dicomnb.downloads.clear()` forgets the complete ones (the files "
        "stay), `dicomnb.downloads.cancel([job_id])` stops and forgets one."
    ),
    new_code_cell(
        "forgotten = dicomnb.downloads.clear()\n"
        'print(f"{len(forgotten)} complete jobs cleared;", dicomnb.downloads)'
    ),
    new_markdown_cell(
        "## 2. Orthanc\n\n"
        "The same verbs against Orthanc, a PACS many sites run. It is found through "
        "`DICOMNB_ORTHANC_DIMSE` (`AET@host:port`) and `DICOMNB_ORTHANC_HTTP` (its REST and WADO "
        "base URL); Binder sets both. Without them, this part is skipped."
    ),
    new_code_cell(
        'dimse = os.environ.get("DICOMNB_ORTHANC_DIMSE")  # e.g. ORTHANC@127.0.0.1:4242\n'
        'http = os.environ.get("DICOMNB_ORTHANC_HTTP")    # e.g. http://127.0.0.1:8042\n'
        "if dimse:\n"
        '    aet, address = dimse.split("@")\n'
        '    host, port = address.rsplit(":", 1)\n'
        '    orthanc = dicomnb.add_node("orthanc", aet=aet, host=host, port=int(port),\n'
        '                               wado_url=f"{http}/wado" if http else None, replace=True)\n'
        '    print(f"{orthanc.aet}@{orthanc.host}:{orthanc.port} answers C-ECHO in {dicomnb.echo(\'orthanc\') * 1000:.0f} ms")\n'
        "else:\n"
        "    orthanc = None\n"
        '    print("No Orthanc here (DICOMNB_ORTHANC_DIMSE is not set): the Orthanc part is skipped. "\n'
        '          "Start one with `python binder/start_orthanc.py start` and set the variables it prints.")'
    ),
    new_markdown_cell(
        "Orthanc returns ModalitiesInStudy and the number of instances of each study itself."
    ),
    new_code_cell(
        "if orthanc:\n"
        '    samples = dicomnb.query("orthanc", patient_name="CompressedSamples*", modalities=("CT", "MR"))\n'
        "    print(samples.message)\n"
        '    display(samples.frame[["PatientName", "StudyDate", "ModalitiesInStudy", "NumberOfStudyRelatedInstances"]])'
    ),
    new_markdown_cell(
        "Retrieve the CT study with C-GET and the MR study with C-MOVE (Orthanc knows dicomnb's "
        "Storage SCP as its modality `dicomnb`), then one of Doe^Peter's studies over HTTP, one "
        "WADO-URI request per instance (the node's `wado_url`)."
    ),
    new_code_cell(
        "if orthanc:\n"
        "    for row in samples.rows:\n"
        '        method = "c-get" if "CT" in row["ModalitiesInStudy"] else "c-move"\n'
        '        print(dicomnb.retrieve("orthanc", row["StudyInstanceUID"], method=method).message)\n'
        '    brain = dicomnb.query("orthanc", patient_name="Doe^Peter", study_description="Brain").rows[0]\n'
        '    print(dicomnb.retrieve("orthanc", brain["StudyInstanceUID"], method="wado-uri").message)\n'
        '    display(dicomnb.catalog.instances.query("origin == \'orthanc\'")[\n'
        '        ["PatientName", "StudyDescription", "Modality", "SeriesNumber", "InstanceNumber", "source"]])'
    ),
    new_code_cell(
        "if orthanc:\n"
        '    display(dicomnb.downloads.frame.query("node == \'orthanc\'")[["description", "method", "state", "total"]])'
    ),
    new_markdown_cell(
        "## Stop the demo archive\n\n"
        "It would stop with the kernel anyway. `stop()` also removes the node `demo`."
    ),
    new_code_cell("dicomnb.demo.stop()\narchive"),
]

notebook = new_notebook(cells=cells, metadata={
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
})
nbformat.write(notebook, Path(__file__).with_name("pacs.ipynb"))
