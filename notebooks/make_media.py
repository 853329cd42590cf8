"""Write notebooks/media.ipynb (kept as code so that its cells are reviewed like code)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# Media: DICOM ZIPs, encrypted ZIPs and DICOMDIR\n\n"
        "Studies often arrive as a ZIP (sometimes encrypted, the password sent separately) or on a "
        "CD/DVD written with a `DICOMDIR`, the index of the disc. dicomnb reads all three into the "
        "same catalog as local files, and tells you what a medium lacks: files its DICOMDIR names "
        "but that are not there, and the other documents that came with the images.\n\n"
        "Everything here is made in a temporary folder from pydicom's bundled test files: a ZIP, an "
        "AES-encrypted ZIP, and a copy of pydicom's sample disc with one image removed and a PDF "
        "report and a CSV of measurements added, as burning software often does."
    ),
    new_code_cell(
        "import pathlib\n"
        "import shutil\n"
        "import tempfile\n"
        "import zipfile\n\n"
        "import pyzipper\n\n"
        "import dicomnb\n\n"
        "samples = dicomnb.sample_data()  # pydicom's bundled test files\n"
        'work = pathlib.Path(tempfile.mkdtemp(prefix="dicomnb-media-"))\n'
        "print(work)"
    ),
    new_markdown_cell(
        "## A DICOM ZIP\n\n"
        "A ZIP holding a study in folders, as archives export them. `dicomnb.import_zip` reads each "
        "entry's header in place, so nothing is unpacked: the catalog's `path` is the archive and "
        "`member` the entry, read again when the pixels are wanted (`copy=True` lands the entries in "
        "dicomnb's cache instead, to keep them when the ZIP goes away)."
    ),
    new_code_cell(
        'study = samples / "dicomdirtests" / "77654033"  # Doe^Archibald: a CR and a CT study\n'
        'plain = work / "archibald.zip"\n'
        'with zipfile.ZipFile(plain, "w", compression=zipfile.ZIP_DEFLATED) as zf:\n'
        '    for path in sorted(study.rglob("*")):\n'
        "        if path.is_file():\n"
        '            zf.write(path, f"EXPORT/{path.relative_to(study)}")\n\n'
        "report = dicomnb.import_zip(plain)\n"
        "print(report.summary())"
    ),
    new_code_cell(
        'dicomnb.catalog.instances[["PatientName", "Modality", "SeriesNumber", "InstanceNumber", "member", "source"]]'
    ),
    new_markdown_cell(
        "## An encrypted ZIP: the password is asked for\n\n"
        "Both ZIP encryptions are read: the old ZipCrypto and WinZip's AES. "
        "Without a password, `import_zip` raises `PasswordRequired`; with a wrong one, "
        "`WrongPassword`. The password is tried on one entry before anything is imported, so a "
        "dialog can simply ask again, and it is kept in memory only (never written, never shown in a "
        "`repr`)."
    ),
    new_code_cell(
        'secret = work / "peter-encrypted.zip"\n'
        'with pyzipper.AESZipFile(secret, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:\n'
        '    zf.setpassword(b"s3cret")\n'
        '    for path in sorted((samples / "dicomdirtests" / "98892001").rglob("*")):  # Doe^Peter\'s CT\n'
        "        if path.is_file():\n"
        '            zf.write(path, f"CT/{path.name}")\n\n'
        "try:\n"
        "    dicomnb.import_zip(secret)\n"
        "except dicomnb.errors.PasswordRequired as exc:\n"
        '    print("PasswordRequired:", exc)\n'
        "try:\n"
        '    dicomnb.import_zip(secret, password="guess")\n'
        "except dicomnb.errors.WrongPassword as exc:\n"
        '    print("WrongPassword:", exc)'
    ),
    new_code_cell(
        'report = dicomnb.import_zip(secret, password="s3cret")\n'
        "print(report.summary())"
    ),
    new_markdown_cell(
        "## A DICOMDIR disc with a missing file and attachments\n\n"
        "pydicom's sample disc (`dicomdirtests`: two patients, six studies) is copied to a folder, "
        "one image its DICOMDIR names is deleted, and a `REPORTS` folder is added with a PDF and a "
        "CSV. A disc copied in part lacks files the same way."
    ),
    new_code_cell(
        'disc = work / "cd"\n'
        'shutil.copytree(samples / "dicomdirtests", disc, ignore=shutil.ignore_patterns("DICOMDIR-*", "TINY_ALPHA", "*.txt"))\n'
        'lost = disc / "98892003" / "MR2" / "6605"\n'
        "lost.unlink()\n\n"
        '(disc / "REPORTS").mkdir()\n'
        'pdf = (b"%PDF-1.1\\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\\n"\n'
        '       b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 80]>>endobj\\ntrailer<</Root 1 0 R>>\\n%%EOF")\n'
        '(disc / "REPORTS" / "report.pdf").write_bytes(pdf)\n'
        '(disc / "REPORTS" / "measurements.csv").write_text("lesion,diameter_mm\\nA,12.5\\nB,7.0\\n")\n'
        'sorted(str(p.relative_to(disc)) for p in disc.iterdir())'
    ),
    new_markdown_cell(
        "`import_dicomdir` takes the DICOMDIR file or the disc's folder (`dicomnb.detect_cdrom()` "
        "finds mounted discs). What it imports are the real files, each found and checked to hold "
        "the instance its record names; `copy=True` copies them to a local folder first, for slow "
        "drives."
    ),
    new_code_cell(
        "dicomnb.catalog.clear()  # only the disc from here on\n"
        "report = dicomnb.import_dicomdir(disc)\n"
        "print(report.summary())"
    ),
    new_markdown_cell(
        "### The DICOMDIR's tree\n\n"
        "`report.tree` is the DICOMDIR as the disc's index tells it: PATIENT → STUDY → SERIES → "
        "IMAGE, one row per image record with its `status`."
    ),
    new_code_cell(
        'series = ["PatientName", "StudyDescription", "Modality", "SeriesNumber"]\n'
        'report.tree.groupby(series, dropna=False)["status"].value_counts().unstack(fill_value=0)'
    ),
    new_markdown_cell(
        "### Missing files\n\n"
        "Records whose file is not on the disc (or holds another instance than its record says) are "
        "in `catalog.missing`, with the reason: the rest of the disc is imported all the same."
    ),
    new_code_cell('dicomnb.catalog.missing[["ReferencedFileID", "reason", "SOPInstanceUID", "PatientID"]]'),
    new_markdown_cell(
        "### Attachments\n\n"
        "Every other file on the disc that is not DICOM (reports, spreadsheets, 3D models...) is "
        "listed in `catalog.attachments` with its kind and size."
    ),
    new_code_cell('dicomnb.catalog.attachments[["path", "kind", "size"]]'),
    new_markdown_cell(
        "`dicomnb.show` opens an attachment in the page when a browser can show it: the PDF in a "
        "viewer with a link to save it; the CSV listed with its name, kind and size."
    ),
    new_code_cell(
        'report_pdf = dicomnb.catalog.attachments.query("kind == \'pdf\'").iloc[0]\n'
        "dicomnb.show(report_pdf)"
    ),
    new_code_cell(
        'table = dicomnb.catalog.attachments.query("kind == \'spreadsheet\'").iloc[0]\n'
        "dicomnb.show(table)"
    ),
    new_markdown_cell(
        "## The same disc sent as a ZIP\n\n"
        "A ZIP holding a DICOMDIR (at its root or in a folder) is read as the disc it is: the same "
        "tree, the same missing file, the same attachments."
    ),
    new_code_cell(
        'zipped_disc = work / "cd.zip"\n'
        'shutil.make_archive(str(zipped_disc.with_suffix("")), "zip", work, "cd")\n'
        "dicomnb.catalog.clear()\n"
        "report = dicomnb.import_zip(zipped_disc)\n"
        "print(report.summary())\n"
        'print("missing:", list(dicomnb.catalog.missing.ReferencedFileID), "attachments:", '
        "sorted(dicomnb.catalog.attachments.kind))"
    ),
    new_markdown_cell(
        "## From a shell\n\n"
        "`dicomnb get -l PATH -z ZIP [--password-file FILE] [--json]` does the same outside Python; it "
        "exits with 3 when a ZIP needs a password it was not given (the password is read from a file, "
        "never from the command line, where other users could see it)."
    ),
    new_code_cell(
        "import json\n"
        "import subprocess\n"
        "import sys\n\n"
        'password_file = work / "password.txt"\n'
        'password_file.write_text("s3cret\\n")\n'
        'done = subprocess.run([sys.executable, "-m", "dicomnb", "get", "-z", str(plain), "-z", str(secret),\n'
        '                       "--password-file", str(password_file), "--json"], capture_output=True, text=True)\n'
        'print("exit status", done.returncode)\n'
        'json.loads(done.stdout)["counts"]'
    ),
]

notebook = new_notebook(cells=cells, metadata={
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
})
nbformat.write(notebook, Path(__file__).with_name("media.ipynb"))
