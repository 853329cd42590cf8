"""Write notebooks/viewers.ipynb (kept as code so that its cells are reviewed like code)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# dicomnb viewers\n\n"
        "`dicomnb.show(x)` opens anything the catalog holds in the viewer its kind calls for, as a "
        "DICOM viewer opens \"the default viewer according to the files\": an image with window/level, "
        "a stack of slices or frames with cine, MPR of a volume, an SR document as readable HTML, ECG "
        "leads, audio, an encapsulated PDF, plain images and attachments. `x` is a series or instance "
        "UID, a record, a row of a catalog table, or a file's path.\n\n"
        "In a live kernel each view is interactive (ipywidgets: sliders, presets, Play); a saved "
        "notebook keeps a static rendering of it for readers without a kernel. All the data here is "
        "pydicom's bundled test files, or made in the notebook."
    ),
    new_code_cell(
        "import dicomnb\n\n"
        "samples = dicomnb.sample_data()\n"
        "report = dicomnb.import_local(samples)\n"
        "print(report.summary().splitlines()[0])"
    ),
    new_markdown_cell(
        "## A 2D image: Modality LUT, VOI LUT, window/level\n\n"
        "The window comes from the file (its presets, with their explanations), or min/max; CT gets "
        "the lung, bone, brain and abdomen presets too. MONOCHROME1 is inverted, colour (RGB, YBR, "
        "palette) converted, overlays drawn, and non-square pixels shown at their true aspect."
    ),
    new_code_cell(
        'ct = dicomnb.catalog.instances.query("path.str.endswith(\'CT_small.dcm\')", engine="python").iloc[0]\n'
        "image = dicomnb.show(ct)\n"
        "image"
    ),
    new_code_cell(
        "print([w.label for w in image.presets()])\n"
        'image.window = "bone"  # the same as choosing it in the presets dropdown\n'
        "pixels = image.render()  # what is drawn: a uint8 numpy array\n"
        "print(pixels.shape, pixels.dtype)"
    ),
    new_markdown_cell(
        "## Multi-frame: frames with cine\n\n"
        "A multi-frame object is a stack of its frames, with **Play** at the file's frame rate."
    ),
    new_code_cell('dicomnb.show(samples / "examples_ybr_color.dcm")'),
    new_markdown_cell(
        "## A stack, and MPR of a volume\n\n"
        "A series of slices is sorted by position along the slice normal (InstanceNumber otherwise); "
        "each slice is decoded once (cached, neighbours decoded ahead). `view=\"mpr\"` shows the "
        "axial, coronal and sagittal planes with their true spacing and orientation, and a crosshair "
        "linked between them. Here a synthetic volume: 60 slices, 3 mm apart, with a bright sphere."
    ),
    new_code_cell(
        "import pathlib\n"
        "import tempfile\n\n"
        "import numpy as np\n"
        "import pydicom\n"
        "from pydicom.uid import generate_uid\n\n"
        'folder = pathlib.Path(tempfile.mkdtemp()) / "phantom"\n'
        "folder.mkdir()\n"
        'template = pydicom.dcmread(samples / "CT_small.dcm")\n'
        "series_uid = generate_uid()\n"
        "z, y, x = np.mgrid[0:60, 0:128, 0:128]\n"
        "body = ((y - 64) ** 2 + (x - 64) ** 2 < 55 ** 2) * 1040  # water, 40 HU after the rescale\n"
        "sphere = ((3 * (z - 30)) ** 2 + (y - 50) ** 2 + (x - 70) ** 2 < 20 ** 2) * 800\n"
        "volume = (body + sphere).astype(np.int16)\n"
        "for i in range(60):\n"
        "    ds = template.copy()\n"
        "    ds.SeriesInstanceUID, ds.SeriesDescription = series_uid, \"phantom\"\n"
        "    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()\n"
        "    ds.InstanceNumber = i + 1\n"
        "    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]\n"
        "    ds.ImagePositionPatient = [-64.0, -64.0, 3.0 * i]\n"
        "    ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 3.0\n"
        "    ds.RescaleIntercept, ds.RescaleSlope = -1000, 1\n"
        "    ds.PixelData = volume[i].tobytes()\n"
        '    ds.save_as(folder / f"IM{i:04d}.dcm")\n'
        "dicomnb.import_local(folder)\n"
        "dicomnb.show(series_uid)"
    ),
    new_code_cell('mpr = dicomnb.show(series_uid, view="mpr")\nmpr'),
    new_markdown_cell(
        "## Structured reports\n\n"
        "The content tree as HTML: concept names, values with units, nested containers, and the images "
        "it refers to (marked when they are in the catalog)."
    ),
    new_code_cell('dicomnb.show(samples / "test-SR.dcm")'),
    new_markdown_cell("## Waveforms: a 12-lead ECG\n\nEach lead with its label, scaled to its units, on a time axis from the sampling rate."),
    new_code_cell('ecg = dicomnb.show(samples / "waveform_ecg.dcm")\nprint([lead.label for lead in ecg.leads])\necg'),
    new_markdown_cell("## Audio\n\nA Basic Voice Audio object plays in the browser (made here: one second of a 440 Hz tone, 8 kHz, 16 bit)."),
    new_code_cell(
        "from pydicom.dataset import Dataset, FileMetaDataset\n\n"
        "rate = 8000\n"
        "tone = (np.sin(2 * np.pi * 440 * np.arange(rate) / rate) * 12000).astype('<i2')\n"
        "audio = Dataset()\n"
        "audio.file_meta = FileMetaDataset()\n"
        "audio.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian\n"
        'audio.SOPClassUID = audio.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.4.1"\n'
        "audio.SOPInstanceUID = audio.file_meta.MediaStorageSOPInstanceUID = generate_uid()\n"
        'audio.Modality, audio.PatientID = "AU", "AUDIO1"\n'
        "group = Dataset()\n"
        "group.WaveformOriginality, group.NumberOfWaveformChannels = \"ORIGINAL\", 1\n"
        "group.NumberOfWaveformSamples, group.SamplingFrequency = rate, rate\n"
        "group.WaveformBitsAllocated, group.WaveformSampleInterpretation = 16, \"SS\"\n"
        "channel = Dataset()\n"
        "source = Dataset()\n"
        'source.CodeValue, source.CodingSchemeDesignator, source.CodeMeaning = "1", "DCM", "Voice"\n'
        "channel.ChannelSourceSequence = [source]\n"
        "group.ChannelDefinitionSequence = [channel]\n"
        "group.WaveformData = tone.tobytes()\n"
        "audio.WaveformSequence = [group]\n"
        'audio_file = folder.parent / "voice.dcm"\n'
        "audio.save_as(audio_file, enforce_file_format=True)\n"
        "dicomnb.show(audio_file)"
    ),
    new_markdown_cell("## Encapsulated PDF\n\nShown in the page, with a link to save it."),
    new_code_cell(
        "pdf = (b\"%PDF-1.1\\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\\n\"\n"
        "       b\"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 80]>>endobj\\ntrailer<</Root 1 0 R>>\\n%%EOF\")\n"
        "doc = Dataset()\n"
        "doc.file_meta = FileMetaDataset()\n"
        "doc.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian\n"
        'doc.SOPClassUID = doc.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"\n'
        "doc.SOPInstanceUID = doc.file_meta.MediaStorageSOPInstanceUID = generate_uid()\n"
        'doc.Modality, doc.MIMETypeOfEncapsulatedDocument = "DOC", "application/pdf"\n'
        "doc.EncapsulatedDocument = pdf + b\"\\0\" * (len(pdf) % 2)\n"
        "doc.EncapsulatedDocumentLength = len(pdf)\n"
        'doc_file = folder.parent / "report.dcm"\n'
        "doc.save_as(doc_file, enforce_file_format=True)\n"
        "dicomnb.show(doc_file)"
    ),
    new_markdown_cell(
        "## Objects with no image\n\n"
        "An RT plan, a structure set, key objects: their header, sequences folded."
    ),
    new_code_cell('dicomnb.show(samples / "rtplan.dcm")'),
    new_markdown_cell(
        "## Compressed transfer syntaxes\n\n"
        "JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE and deflate decode through pydicom's "
        "plugins, installed with `pip install 'dicomnb[codecs]'`. Without them the view says which extra "
        "to install instead of showing a traceback."
    ),
    new_code_cell(
        'for name in ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jpeg.dcm"]:\n'
        "    view = dicomnb.show(samples / name)\n"
        "    print(name, view.render().shape)"
    ),
    new_markdown_cell("## Plain images and attachments\n\nPNG, JPEG, TIFF, BMP and GIF files; other files are listed with a way to open what the browser can show."),
    new_code_cell(
        "import matplotlib.image\n\n"
        'picture = folder.parent / "gradient.png"\n'
        "matplotlib.image.imsave(picture, np.linspace(0, 1, 64 * 64).reshape(64, 64), cmap='viridis')\n"
        "dicomnb.show(picture)"
    ),
    new_code_cell(
        'notes = folder.parent / "notes.txt"\n'
        'notes.write_text("Clinical notes that came with the study.\\n")\n'
        "dicomnb.show(notes)"
    ),
    new_markdown_cell(
        "## A study at a glance\n\n"
        "A study's UID (or a row of `catalog.studies`) gives a thumbnail per series; thumbnails come "
        "from one decoded image per series, cached."
    ),
    new_code_cell(
        'study = dicomnb.catalog.studies.query("StudyInstanceUID == @ct.StudyInstanceUID").iloc[0]\n'
        "dicomnb.show(study)"
    ),
]

notebook = new_notebook(cells=cells, metadata={
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
})
nbformat.write(notebook, Path(__file__).with_name("viewers.ipynb"))
