"""Write notebooks/quickstart.ipynb (kept as code so that its cells are reviewed like code)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# dicomnb quickstart\n\n"
        "dicomnb brings a DICOM viewer's import dialog into Jupyter: local files and folders, DICOM ZIPs "
        "(encrypted too) and DICOMDIR media all land in **one catalog** that you explore as pandas "
        "DataFrames, and a series comes back as a numpy volume.\n\n"
        "This notebook uses only the sample files bundled with pydicom: nothing to download."
    ),
    new_code_cell(
        "import dicomnb\n\n"
        "samples = dicomnb.sample_data()  # pydicom's bundled test files\n"
        "report = dicomnb.import_local(samples)  # recursive; DICOM recognised by content, any extension\n"
        "report"
    ),
    new_markdown_cell(
        "## The import dialog\n\n"
        "`dicomnb.dialog()` is a DICOM viewer's import dialog in the notebook: tabs **Local**, **ZIP**, "
        "**DICOMDIR**, **Drop** (drag files or whole folders from the desktop) and **Query/Retrieve** "
        "(the demo archive below, or your PACS), then the download panel and an explorer of the catalog "
        "with a thumbnail per series. Every button is also a plain call:"
    ),
    new_code_cell("d = dicomnb.dialog()"),
    new_code_cell(
        'd.local.path.value = str(samples / "dicomdirtests")\n'
        "d.local.open_after.value = True  # draw the first imported series in the explorer's viewer\n"
        "d.local.import_()\n"
        "d.local.wait()\n"
        "print(d.alert.message)"
    ),
    new_markdown_cell(
        "The catalog accumulates everything imported in this kernel. The same instance imported twice "
        "is one row. Four views: patients, studies, series, instances."
    ),
    new_code_cell("dicomnb.catalog.patients.head(10)"),
    new_code_cell("dicomnb.catalog.studies.head(10)"),
    new_code_cell("dicomnb.catalog.series.head(10)"),
    new_code_cell(
        'dicomnb.catalog.instances[["PatientName", "Modality", "SeriesNumber", "InstanceNumber", '
        '"Rows", "Columns", "TransferSyntaxUID", "path"]].head(10)'
    ),
    new_markdown_cell(
        "## Files that could not be imported\n\n"
        "A batch import never stops on one bad file: each gets a typed error (`dicomnb.errors`) in the "
        "`errors` table, and the import goes on. pydicom's samples include files cut short on purpose."
    ),
    new_code_cell('dicomnb.catalog.errors[["path", "error", "message"]]'),
    new_markdown_cell(
        "## Names in any character set\n\n"
        "Text is decoded with each file's SpecificCharacterSet: Korean, Japanese, Cyrillic, Greek..."
    ),
    new_code_cell(
        'dicomnb.import_local(samples.parent / "charset_files")\n'
        'dicomnb.catalog.instances.query("PatientName.str.contains(\'[^ -~]\')", engine="python")'
        '[["PatientName"]].drop_duplicates().head(12)'
    ),
    new_markdown_cell(
        "## A series as a numpy volume\n\n"
        "`load_series` sorts slices by their position along the slice normal (InstanceNumber "
        "otherwise) and applies the Modality LUT (Hounsfield units for CT)."
    ),
    new_code_cell(
        "%matplotlib inline\n"
        "import matplotlib.pyplot as plt\n\n"
        'ct = dicomnb.catalog.instances.query("Modality == \'CT\' and path.str.endswith(\'CT_small.dcm\')", '
        'engine="python").iloc[0]\n'
        "volume = dicomnb.load_series(ct.SeriesInstanceUID)\n"
        "print(volume.shape, volume.dtype, volume.min(), volume.max())\n"
        "plt.imshow(volume[0], cmap='gray', vmin=-160, vmax=240)\n"
        "plt.title(ct.PatientName)\n"
        "plt.axis('off');"
    ),
    new_markdown_cell(
        "## Viewers\n\n"
        "`dicomnb.show(x)` opens a series, an instance, a catalog row or a path in the viewer its kind "
        "calls for: window/level with presets for images, a slice slider (and cine) for stacks, "
        "`view=\"mpr\"` for the three planes of a volume, SR as HTML, ECG leads, audio, PDF. "
        "See `viewers.ipynb` for each of them."
    ),
    new_code_cell("dicomnb.show(ct.SeriesInstanceUID)"),
    new_code_cell('dicomnb.show(samples / "test-SR.dcm")'),
    new_markdown_cell(
        "## DICOMDIR media\n\n"
        "The tree comes from the DICOMDIR records; what is imported are the real files, each checked "
        "against its record (found even when the names were lower-cased by the mount). Records whose "
        "files are missing are listed in `catalog.missing`; other files on the media in "
        "`catalog.attachments`."
    ),
    new_code_cell(
        'media = dicomnb.import_dicomdir(samples / "dicomdirtests")\n'
        "print(media.summary())\n"
        "media.tree.head(8)"
    ),
    new_markdown_cell(
        "## DICOM ZIP, with a password\n\n"
        "An encrypted archive raises `PasswordRequired` (or `WrongPassword`), typed so that a dialog "
        "can ask again. Entries are read one by one into dicomnb's cache; zip bombs and names that "
        "would escape the cache are refused."
    ),
    new_code_cell(
        "import pathlib\nimport tempfile\n\nimport pyzipper\n\n"
        'archive = pathlib.Path(tempfile.mkdtemp()) / "study.zip"\n'
        'with pyzipper.AESZipFile(archive, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:\n'
        '    zf.setpassword(b"demo")\n'
        '    for name in ["CT_small.dcm", "MR_small.dcm"]:\n'
        '        zf.write(samples / name, f"STUDY/{name}")\n\n'
        "try:\n"
        "    dicomnb.import_zip(archive)\n"
        "except dicomnb.errors.PasswordRequired as exc:\n"
        '    print("PasswordRequired:", exc)\n\n'
        'dicomnb.import_zip(archive, password="demo")'
    ),
    new_markdown_cell(
        "The instances stay in the archive: `path` is the archive and `member` the entry, read again "
        "when pixels are asked for (`copy=True` lands them in dicomnb's cache instead)."
    ),
    new_code_cell(
        'dicomnb.catalog.instances.query("source == \'zip\'")[["PatientName", "Modality", "member", "path"]]'
    ),
    new_markdown_cell(
        "## The same verbs on the command line\n\n"
        "`dicomnb get -l PATH [-l PATH ...] [-z ZIP ...] [--password-file FILE] [--no-recursive] "
        "[--copy] [--json]`"
    ),
    new_code_cell(
        "import json\nimport subprocess\nimport sys\n\n"
        'out = subprocess.run([sys.executable, "-m", "dicomnb", "get", "-l", str(samples / "dicomdirtests"), "--json"],\n'
        "                     capture_output=True, text=True, check=True).stdout\n"
        'result = json.loads(out)\n'
        '{key: len(value) for key, value in result.items() if isinstance(value, list)}'
    ),
    new_markdown_cell(
        "## What a drop zone accepts\n\n"
        "Exactly three cases: a folder holding a DICOMDIR, a DICOM folder, or selected files."
    ),
    new_code_cell(
        'print(dicomnb.check_drop([samples / "dicomdirtests"]).kind)\n'
        "try:\n"
        '    dicomnb.check_drop([samples / "dicomdirtests", samples / "CT_small.dcm"])\n'
        "except dicomnb.errors.DropRejected as exc:\n"
        "    print(exc)"
    ),
    new_markdown_cell(
        "## Query and retrieve: the demo archive\n\n"
        "`dicomnb.demo()` starts pynetdicom's Q/R SCP on 127.0.0.1 (a child process of this kernel), "
        "loaded with pydicom's sample files, and saves it as the node `demo`: C-FIND, C-GET and C-MOVE "
        "work with no PACS installed. It stops with the kernel, or with `dicomnb.demo.stop()`. "
        "A real archive is added the same way: `dicomnb.add_node(\"pacs\", aet=..., host=..., port=...)`."
    ),
    new_code_cell("archive = dicomnb.demo()\narchive"),
    new_code_cell(
        'studies = dicomnb.query("demo")  # C-FIND, Study Root: one row per study\n'
        'studies.frame[["PatientName", "PatientID", "StudyDate", "StudyInstanceUID"]]'
    ),
    new_markdown_cell(
        "The search fields are the dialog's: names and IDs with `*` wildcards, modalities, dates "
        "or a period. qrscp ignores ModalitiesInStudy, so dicomnb checks the series of each study "
        "and says so. Then the series of one of the CT studies:"
    ),
    new_code_cell(
        'ct = dicomnb.query("demo", modalities=("CT",))\n'
        "print(ct.message)\n"
        'peter = next(row for row in ct.rows if str(row["PatientName"]) == "Doe^Peter")\n'
        'series = dicomnb.query("demo", level="series", study_uid=peter["StudyInstanceUID"])\n'
        'series.frame[["SeriesNumber", "Modality", "SeriesInstanceUID"]]'
    ),
    new_markdown_cell(
        "Retrieve the CT studies with C-GET: the instances of each are listed (C-FIND at IMAGE "
        "level), fetched series by series into the local store, filed into the catalog (source "
        "`dimse`, origin `demo`) and checked against the list. The catalog is emptied first, so "
        "that the rows below are the retrieved files, not the same instances imported from disk above."
    ),
    new_code_cell(
        "dicomnb.catalog.clear()\n"
        "for row in ct.rows:\n"
        '    print(dicomnb.retrieve("demo", row["StudyInstanceUID"], method="c-get").message)\n'
        'dicomnb.catalog.instances[["PatientName", "SeriesNumber", "InstanceNumber", "Modality", "Rows", '
        '"Columns", "source", "origin", "path"]]'
    ),
    new_code_cell(
        'retrieved = dicomnb.catalog.instances.query("Rows == 128").iloc[0]  # CT_small, retrieved\n'
        "volume = dicomnb.load_series(retrieved.SeriesInstanceUID)\n"
        "plt.imshow(volume[0], cmap='gray', vmin=-160, vmax=240)\n"
        'plt.title(f"{retrieved.PatientName}, from {retrieved.origin} ({retrieved.source})")\n'
        "plt.axis('off');"
    ),
    new_markdown_cell(
        "The same from a shell: `dicomnb demo` runs the archive until Ctrl-C; `dicomnb query demo` "
        "and `dicomnb retrieve demo --study UID` work meanwhile. Stop it here:"
    ),
    new_code_cell("dicomnb.demo.stop()\narchive"),
]

notebook = new_notebook(cells=cells, metadata={
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
})
nbformat.write(notebook, Path(__file__).with_name("quickstart.ipynb"))
