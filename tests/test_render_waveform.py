"""Waveforms: pydicom's 12-lead ECG plotted lead by lead; audio waveforms built here played as WAV."""

from __future__ import annotations

import base64
import io
import re
import warnings
import wave
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import TEST_FILES, require_module
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.waveforms.numpy_handler import multiplex_array

import dicomnb
from dicomnb.errors import InputError
from dicomnb.render import documents
from dicomnb.render.waveform import (
    MAX_PLOTTED_SAMPLES,
    AudioView,
    WaveformView,
    alaw_to_linear,
    is_audio,
    is_waveform,
    ulaw_to_linear,
)

ECG = TEST_FILES / "waveform_ecg.dcm"
BASIC_VOICE_AUDIO = "1.2.840.10008.5.1.4.1.1.9.4.1"
HEMODYNAMIC = "1.2.840.10008.5.1.4.1.1.9.2.1"
DTYPES = {"SS": "<i2", "US": "<u2", "SB": "i1", "UB": "u1", "MB": "u1", "AB": "u1", "SL": "<i4", "UL": "<u4"}


def channel(meaning: str, *, sensitivity: float | None = None, units: str = "mm[Hg]", correction: float = 1.0,
            baseline: float = 0.0, skew: float = 0.0, bits: int = 16) -> Dataset:
    item = Dataset()
    source = Dataset()
    source.CodeValue, source.CodingSchemeDesignator, source.CodeMeaning = "1", "99TEST", meaning
    item.ChannelSourceSequence = [source]
    if sensitivity is not None:
        unit = Dataset()
        unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = units, "UCUM", units
        item.ChannelSensitivity = sensitivity
        item.ChannelSensitivityUnitsSequence = [unit]
        item.ChannelSensitivityCorrectionFactor = correction
        item.ChannelBaseline = baseline
    item.ChannelSampleSkew = skew
    item.WaveformBitsStored = bits
    return item


def group(stored: np.ndarray, interpretation: str, frequency: float, channels: list[Dataset],
          label: str = "", offset: float = 0.0, padding: bytes | None = None) -> Dataset:
    item = Dataset()
    item.MultiplexGroupTimeOffset = offset
    item.WaveformOriginality = "ORIGINAL"
    item.NumberOfWaveformChannels = stored.shape[1]
    item.NumberOfWaveformSamples = stored.shape[0]
    item.SamplingFrequency = frequency
    if label:
        item.MultiplexGroupLabel = label
    item.ChannelDefinitionSequence = channels
    item.WaveformBitsAllocated = np.dtype(DTYPES[interpretation]).itemsize * 8
    item.WaveformSampleInterpretation = interpretation
    if padding is not None:
        item.WaveformPaddingValue = padding
    data = stored.astype(DTYPES[interpretation]).tobytes()
    item.WaveformData = data + b"\x00" * (len(data) % 2)
    return item


def waveform_file(path: Path, groups: list[Dataset], sop_class: str = HEMODYNAMIC, modality: str = "HD") -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    ds.PatientName = "Doe^Jane"
    ds.WaveformSequence = groups
    ds.save_as(path, enforce_file_format=True)
    return path


# -- the 12-lead ECG --------------------------------------------------------------------------------
def test_ecg_has_twelve_leads_with_their_labels_scaling_and_samples() -> None:
    ds = pydicom.dcmread(ECG)
    view = WaveformView(ECG)
    assert view.kind == "waveform"
    assert [g.label for g in view.groups] == ["RHYTHM", "MEDIAN BEAT"]
    assert [g.sample_count for g in view.groups] == [10000, 1200]

    leads = view.leads
    assert len(leads) == 12
    expected = [str(c.ChannelSourceSequence[0].CodeMeaning) for c in ds.WaveformSequence[0].ChannelDefinitionSequence]
    assert [lead.label for lead in leads] == expected
    assert [lead.short for lead in leads] == ["I", "II", "III", "aVR", "aVL", "aVF",
                                              "V1", "V2", "V3", "V4", "V5", "V6"]
    assert {lead.units for lead in leads} == {"uV"} and {lead.units_meaning for lead in leads} == {"microvolt"}
    # stored × sensitivity (1.25 uV) × correction + baseline, as pydicom computes it
    scaled = multiplex_array(ds, 0, as_raw=False)
    raw = multiplex_array(ds, 0, as_raw=True)
    for number, lead in enumerate(leads):
        assert lead.samples.shape == (10000,)
        np.testing.assert_allclose(lead.samples, scaled[:, number])
        np.testing.assert_allclose(lead.samples, raw[:, number] * 1.25)
        assert lead.time[0] == 0.0 and lead.time[-1] == pytest.approx(9.999)


def test_ecg_plot_draws_each_lead_with_its_label() -> None:
    view = WaveformView(ECG)
    for index, samples in ((0, 10000), (1, 1200)):
        figure = view.figure(index)
        axes = figure.axes
        assert len(axes) == 12
        for ax, lead in zip(axes, view.groups[index].channels, strict=True):
            (line,) = ax.get_lines()
            assert len(line.get_xdata()) == samples
            np.testing.assert_array_equal(line.get_ydata(), lead.samples)
            assert ax.get_ylabel() == f"{lead.short}\nuV"
        assert axes[-1].get_xlabel() == "time (s)"
        assert axes[-1].get_xlim() == (0.0, samples / 1000)
    window = view.figure(0, start=2.0, duration=2.5)
    (line,) = window.axes[0].get_lines()
    assert len(line.get_xdata()) == 2500 and line.get_xdata()[0] == 2.0


def test_ecg_html_has_both_groups_and_the_measurements() -> None:
    page = WaveformView(ECG).html()
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 2
    assert "RHYTHM: 12 channels, 10000 samples at 1000 Hz (10.00 s), original" in page
    assert "QRS Duration: 75 ms" in page and "RITMO SINUSALE" in page
    assert "66 marks" in page and "P Onset: POINT at 299 samples" in page


def test_ecg_from_the_catalog_and_as_a_widget() -> None:
    dicomnb.import_local(ECG)
    (record,) = dicomnb.catalog.records()
    view = WaveformView(record)
    assert len(view.leads) == 12
    require_module("ipywidgets", "notebook")
    box = view.widget()
    header, (group, width), start, image = box.children[0], box.children[1].children, *box.children[2:]
    first = bytes(image.value)
    assert first.startswith(b"\x89PNG") and "QRS Duration" in header.value
    width.value = 2.5
    assert start.max == pytest.approx(7.5) and not start.disabled and bytes(image.value) != first
    start.value = 5.0
    group.value = 1  # the median beat lasts 1.2 s: less than the window, nothing to scroll
    assert start.max == 0.0 and start.disabled


# -- waveforms built here ---------------------------------------------------------------------------
def test_scaling_offsets_skew_and_padding(tmp_path: Path) -> None:
    stored = np.array([[0, 10], [100, -32768], [200, 30]], dtype=np.int16)
    channels = [channel("Aortic pressure", sensitivity=0.5, correction=2.0, baseline=-10.0),
                channel("Left ventricle", sensitivity=0.1, units="kPa", skew=4.0)]
    path = waveform_file(tmp_path / "hd.dcm", [group(stored, "SS", 250, channels, "PRESSURE", offset=20.0,
                                                            padding=np.int16(-32768).tobytes())])
    (pressure,) = WaveformView(path).groups
    aortic, ventricle = pressure.channels
    np.testing.assert_allclose(aortic.samples, [-10.0, 90.0, 190.0])
    assert aortic.units == "mm[Hg]" and aortic.short == "Aortic pressure"
    np.testing.assert_allclose(ventricle.samples, [1.0, np.nan, 3.0])  # the padding value is a gap
    np.testing.assert_allclose(aortic.time, [0.020, 0.024, 0.028])  # the group starts 20 ms late
    np.testing.assert_allclose(ventricle.time, [0.024, 0.028, 0.032])  # and this channel 4 ms later
    assert pressure.describe() == "PRESSURE: 2 channels, 3 samples at 250 Hz (0.01 s), original"


def test_unscaled_channels_have_no_units(tmp_path: Path) -> None:
    stored = np.array([[1], [2], [3]], dtype=np.int16)
    path = waveform_file(tmp_path / "raw.dcm", [group(stored, "SS", 100, [channel("Respiration")])])
    (resp,) = WaveformView(path).leads
    assert resp.units == "" and list(resp.samples) == [1.0, 2.0, 3.0]


def test_a_long_signal_is_drawn_as_its_envelope(tmp_path: Path) -> None:
    n = 10 * MAX_PLOTTED_SAMPLES
    stored = np.zeros((n, 1), dtype=np.int16)
    stored[::1000, 0] = 1000  # one-sample spikes a plain decimation would miss
    stored[500, 0] = -2000
    path = waveform_file(tmp_path / "long.dcm", [group(stored, "SS", 200, [channel("Holter", sensitivity=1.0)])])
    view = WaveformView(path)
    (line,) = view.figure().axes[0].get_lines()
    assert len(line.get_ydata()) <= MAX_PLOTTED_SAMPLES
    assert max(line.get_ydata()) == 1000 and min(line.get_ydata()) == -2000
    assert line.get_xdata()[-1] <= n / 200


def test_unreadable_waveforms_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no waveform"):
        WaveformView(TEST_FILES / "CT_small.dcm")
    stored = np.zeros((100, 2), dtype=np.int16)
    cut = group(stored, "SS", 100, [channel("a"), channel("b")])
    cut.WaveformData = cut.WaveformData[:50]
    with pytest.raises(InputError, match="the file is cut short"):
        WaveformView(waveform_file(tmp_path / "cut.dcm", [cut]))
    odd = group(stored, "SS", 100, [channel("a"), channel("b")])
    odd.WaveformSampleInterpretation = "UB"  # 16-bit unsigned bytes: no such thing
    with pytest.raises(InputError, match="16-bit samples of interpretation 'UB'"):
        WaveformView(waveform_file(tmp_path / "odd.dcm", [odd]))
    still = group(stored, "SS", 0, [channel("a"), channel("b")])
    with pytest.raises(InputError, match="no usable Sampling Frequency"):
        WaveformView(waveform_file(tmp_path / "still.dcm", [still]))


# -- audio ------------------------------------------------------------------------------------------
def g711_reference() -> tuple[np.ndarray, np.ndarray] | None:
    """The standard library's G.711 expansion where it still has one (``audioop``, until 3.13)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop  # type: ignore[import-not-found]
        except ImportError:
            return None
    every = bytes(range(256))
    return (np.frombuffer(audioop.ulaw2lin(every, 2), "<i2"), np.frombuffer(audioop.alaw2lin(every, 2), "<i2"))


def test_g711_expansion() -> None:
    every = np.arange(256, dtype=np.uint8)
    ulaw, alaw = ulaw_to_linear(every), alaw_to_linear(every)
    # fixed points of the G.711 tables: silence, and the loudest codes of each sign
    assert (ulaw[0xFF], ulaw[0x7F], ulaw[0x80], ulaw[0x00]) == (0, 0, 32124, -32124)
    assert (alaw[0xD5], alaw[0x55], alaw[0xAA], alaw[0x2A]) == (8, -8, 32256, -32256)
    reference = g711_reference()
    if reference is not None:
        np.testing.assert_array_equal(ulaw, reference[0])
        np.testing.assert_array_equal(alaw, reference[1])


def read_wav(data: bytes) -> tuple[int, int, np.ndarray]:
    with wave.open(io.BytesIO(data)) as reader:
        assert reader.getsampwidth() == 2
        frames = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
        return reader.getframerate(), reader.getnchannels(), frames.reshape(-1, reader.getnchannels())


@pytest.mark.parametrize(("interpretation", "stored", "pcm"), [
    ("SS", [[-32768, 5], [0, -5], [32767, 7]], [[-32768, 5], [0, -5], [32767, 7]]),
    ("US", [[0, 32768], [65535, 1], [32768, 32767]], [[-32768, 0], [32767, -32767], [0, -1]]),
    ("SB", [[-128, 0], [127, 1], [0, -1]], [[-32768, 0], [32512, 256], [0, -256]]),
    ("UB", [[0, 128], [255, 129], [128, 127]], [[-32768, 0], [32512, 256], [0, -256]]),
    ("MB", [[0xFF, 0x80], [0x00, 0x7F], [0xFF, 0xFF]], [[0, 32124], [-32124, 0], [0, 0]]),
    ("AB", [[0xD5, 0x55], [0xAA, 0x2A], [0xD5, 0xD5]], [[8, -8], [32256, -32256], [8, 8]]),
    ("SL", [[-(2**23), 2**23 - 1], [256, -256], [0, 0]], [[-32768, 32767], [1, -1], [0, 0]]),
])
def test_audio_samples_become_16_bit_wav(tmp_path: Path, interpretation: str, stored: list[list[int]],
                                          pcm: list[list[int]]) -> None:
    bits = 24 if interpretation == "SL" else 16
    data = np.array(stored)
    path = waveform_file(tmp_path / "voice.dcm",
                         [group(data, interpretation, 8000, [channel("left", bits=bits), channel("right", bits=bits)])],
                         BASIC_VOICE_AUDIO, "AU")
    view = AudioView(path)
    rate, channels, frames = read_wav(view.wav())
    assert (rate, channels) == (8000, 2)
    np.testing.assert_array_equal(frames, pcm)


def test_audio_plays_in_the_page(tmp_path: Path) -> None:
    time = np.arange(8000) / 8000
    tone = np.round(np.sin(2 * np.pi * 440 * time) * 20000).astype(np.int16)[:, None]
    path = waveform_file(tmp_path / "tone.dcm", [group(tone, "SS", 8000, [channel("voice")], "VOICE")],
                         BASIC_VOICE_AUDIO, "AU")
    view = AudioView(path)
    assert view.kind == "audio" and view.title.startswith("Audio · Doe, Jane")
    page = view.html()
    (encoded,) = re.findall(r'<audio controls preload="metadata" src="data:audio/wav;base64,([^"]+)"></audio>', page)
    rate, channels, frames = read_wav(base64.b64decode(encoded))
    assert (rate, channels) == (8000, 1)
    np.testing.assert_array_equal(frames[:, 0], tone[:, 0])
    assert "VOICE: 1 channel, 8000 samples at 8000 Hz (1.00 s)" in page
    view.save(tmp_path / "tone.wav")
    assert (tmp_path / "tone.wav").read_bytes() == view.wav()


def test_audio_too_large_to_embed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tone = np.zeros((8000, 1), dtype=np.int16)
    path = waveform_file(tmp_path / "tone.dcm", [group(tone, "SS", 8000, [channel("voice")])], BASIC_VOICE_AUDIO, "AU")
    monkeypatch.setattr(documents, "EMBED_LIMIT", 1000)
    page = AudioView(path).html()
    assert "<audio" not in page and "view.save('sound.wav', group=0)" in page


def test_which_waveforms_are_audio(tmp_path: Path) -> None:
    tone = np.zeros((10, 1), dtype=np.int16)
    voice = pydicom.dcmread(waveform_file(tmp_path / "a.dcm", [group(tone, "SS", 8000, [channel("v")])],
                                          BASIC_VOICE_AUDIO, "AU"))
    tagged = pydicom.dcmread(waveform_file(tmp_path / "b.dcm", [group(tone, "SS", 8000, [channel("v")])],
                                           HEMODYNAMIC, "AU"))
    assert is_audio(voice) and is_audio(tagged)
    assert not is_audio(pydicom.dcmread(ECG))
    assert is_waveform(voice.SOPClassUID) and is_waveform(pydicom.dcmread(ECG).SOPClassUID)
    assert not is_waveform(pydicom.dcmread(TEST_FILES / "CT_small.dcm").SOPClassUID) and not is_waveform(None)
