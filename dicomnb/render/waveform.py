"""Waveforms: ECG and other physiological signals plotted, audio made playable.

A DICOM waveform holds one or more multiplex groups (Waveform Sequence items); each group has
channels sampled together at one Sampling Frequency, interleaved in Waveform Data. A channel
says what it records (Channel Source Sequence: "Lead I (Einthoven)", "Lead V1") and how a
stored sample becomes a physical value (PS3.3 C.10.9.1.4):

    value = stored × Channel Sensitivity × Channel Sensitivity Correction Factor + Channel Baseline

in the units of its Channel Sensitivity Units Sequence (UCUM, ``uV`` for an ECG). Samples
equal to the group's Waveform Padding Value are gaps (NaN). 8-bit μ-law (``MB``) and A-law
(``AB``) samples are expanded to linear values first (ITU-T G.711).

:class:`WaveformView` plots every channel of a group with its label, its units and a time axis
in seconds; :class:`AudioView` turns an audio waveform (Basic Voice Audio, General Audio, or
any waveform of modality ``AU``) into a WAV file played in the page by an ``<audio>`` element.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import warnings
import wave
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dicomnb.core.errors import InputError
from dicomnb.core.volume import read_dataset
from dicomnb.render import documents
from dicomnb.render.base import View, png_html
from dicomnb.render.sr import (
    code_text,
    format_datetime,
    format_person_name,
    temporal_text,
    unit_text,
)

if TYPE_CHECKING:
    from dicomnb.core.model import InstanceRecord

__all__ = [
    "AUDIO_SOP_CLASSES",
    "AudioView",
    "Channel",
    "MultiplexGroup",
    "WaveformView",
    "alaw_to_linear",
    "is_audio",
    "is_waveform",
    "read_groups",
    "ulaw_to_linear",
]

#: Basic Voice Audio Waveform Storage and General Audio Waveform Storage.
AUDIO_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.9.4.1", "1.2.840.10008.5.1.4.1.1.9.4.2"})

#: Above this many samples per channel in the time window shown, a plot draws each pixel
#: column's minimum and maximum instead of every sample (a 24-hour Holter has millions).
MAX_PLOTTED_SAMPLES = 20_000

# -- G.711 -----------------------------------------------------------------------------------------
def _ulaw_table() -> np.ndarray:
    code = ~np.arange(256, dtype=np.int32) & 0xFF  # μ-law bytes are stored inverted
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + 0x84 << exponent) - 0x84
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    code = np.arange(256, dtype=np.int32) ^ 0x55  # A-law bytes have their even bits inverted
    segment = (code & 0x70) >> 4
    magnitude = ((code & 0x0F) << 4) + np.where(segment == 0, 8, 0x108)
    magnitude = np.where(segment > 1, magnitude << np.maximum(segment - 1, 0), magnitude)
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


_ULAW = _ulaw_table()
_ALAW = _alaw_table()


def ulaw_to_linear(data: np.ndarray) -> np.ndarray:
    """μ-law bytes (G.711) as 16-bit linear samples."""
    return _ULAW[np.asarray(data, dtype=np.uint8)]


def alaw_to_linear(data: np.ndarray) -> np.ndarray:
    """A-law bytes (G.711) as 16-bit linear samples."""
    return _ALAW[np.asarray(data, dtype=np.uint8)]


# -- the model -------------------------------------------------------------------------------------
@dataclass
class Channel:
    """One channel (an ECG lead, a pressure, an audio track) of a multiplex group.

    Attributes
    ----------
    label : str
        What it records: the Code Meaning of its Channel Source Sequence ("Lead I (Einthoven)"),
        else its Channel Label, else "channel N".
    short : str
        A short name for a plot's axis ("I", "aVR", "V1").
    samples : numpy.ndarray
        Its values in ``units`` (float; NaN where the group's padding value stands).
    units : str
        The unit symbol ("uV", "mm[Hg]"), empty when the file gives none (raw samples then).
    units_meaning : str
        The unit in words ("microvolt").
    sampling_frequency : float
        Samples per second.
    time_offset : float
        Seconds from the group's start to this channel's first sample (group offset and skew).
    """

    label: str
    short: str
    samples: np.ndarray
    units: str
    units_meaning: str
    sampling_frequency: float
    time_offset: float = 0.0

    @property
    def time(self) -> np.ndarray:
        """The time of each sample in seconds."""
        return self.time_offset + np.arange(self.samples.shape[0]) / self.sampling_frequency


@dataclass
class MultiplexGroup:
    """One multiplex group: channels sampled together.

    Attributes
    ----------
    index : int
        Its position in the Waveform Sequence (0-based).
    label : str
        Multiplex Group Label ("RHYTHM", "MEDIAN BEAT"), or "group N".
    originality : str
        ``ORIGINAL`` or ``DERIVED``.
    sampling_frequency : float
        Samples per second.
    interpretation : str
        Waveform Sample Interpretation (``SS``, ``MB``...).
    raw : numpy.ndarray
        The stored samples, ``(samples, channels)``; μ-law and A-law expanded to 16-bit linear.
    channels : list of Channel
        Its channels, scaled.
    """

    index: int
    label: str
    originality: str
    sampling_frequency: float
    interpretation: str
    raw: np.ndarray
    channels: list[Channel] = field(default_factory=list)

    @property
    def sample_count(self) -> int:
        """Samples per channel."""
        return int(self.raw.shape[0])

    @property
    def duration(self) -> float:
        """Seconds the group lasts."""
        return self.sample_count / self.sampling_frequency

    def describe(self) -> str:
        """One line: label, channels, samples, frequency, duration."""
        return (f"{self.label}: {len(self.channels)} channel{'s' if len(self.channels) != 1 else ''}, "
                f"{self.sample_count} samples at {self.sampling_frequency:g} Hz ({self.duration:.2f} s)"
                + (f", {self.originality.lower()}" if self.originality else ""))


def _short_name(label: str) -> str:
    """``Lead I (Einthoven)`` → ``I``, ``Lead aVR`` → ``aVR``; other labels as they are."""
    short = label.split(" (")[0].strip()
    return short[5:].strip() if short.lower().startswith("lead ") and len(short) > 5 else short


def _float(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _raw(ds: Any, index: int, item: Any) -> np.ndarray:
    from pydicom.waveforms.numpy_handler import WAVEFORM_DTYPES, multiplex_array

    where = f"multiplex group {index + 1}"
    missing = [k for k in ("NumberOfWaveformChannels", "NumberOfWaveformSamples", "WaveformBitsAllocated",
                           "WaveformSampleInterpretation", "WaveformData") if k not in item]
    if missing:
        raise InputError(f"{where} cannot be read: it has no {', '.join(missing)}")
    interpretation = str(item.WaveformSampleInterpretation)
    if (int(item.WaveformBitsAllocated), interpretation) not in WAVEFORM_DTYPES:
        raise InputError(f"{where}: {item.WaveformBitsAllocated}-bit samples of interpretation "
                         f"{interpretation!r} are not a combination the standard allows")
    expected = int(item.NumberOfWaveformSamples) * int(item.NumberOfWaveformChannels) * (
        int(item.WaveformBitsAllocated) // 8)
    if len(item.WaveformData) < expected:
        raise InputError(f"{where}: Waveform Data holds {len(item.WaveformData)} bytes, "
                         f"{expected} are declared: the file is cut short")
    # stored values: Dataset.waveform_array would scale them already (and μ-law bytes wrongly)
    raw = np.asarray(multiplex_array(ds, index, as_raw=True))
    if interpretation == "MB":
        return ulaw_to_linear(raw)
    if interpretation == "AB":
        return alaw_to_linear(raw)
    return raw


def read_groups(ds: Any) -> list[MultiplexGroup]:
    """The multiplex groups of a waveform dataset, channels scaled to their units.

    Raises
    ------
    InputError
        The dataset has no waveform, or its waveform data cannot be read.
    """
    if not ds.get("WaveformSequence"):
        raise InputError(f"no waveform: the dataset has no Waveform Sequence (SOP class "
                         f"{ds.get('SOPClassUID', '?')})")
    groups = []
    for index, item in enumerate(ds.WaveformSequence):
        raw = _raw(ds, index, item)
        frequency = _float(item.get("SamplingFrequency"), 0.0)
        if frequency <= 0:
            raise InputError(f"multiplex group {index + 1} has no usable Sampling Frequency")
        group = MultiplexGroup(index, str(item.get("MultiplexGroupLabel") or f"group {index + 1}"),
                               str(item.get("WaveformOriginality") or ""), frequency,
                               str(item.WaveformSampleInterpretation), raw)
        padding = item.get("WaveformPaddingValue")
        pad = None
        if padding is not None and item.WaveformSampleInterpretation not in ("MB", "AB"):
            pad = np.frombuffer(bytes(padding), dtype=raw.dtype)[:1] if len(padding) >= raw.itemsize else None
        offset = _float(item.get("MultiplexGroupTimeOffset"), 0.0) / 1000.0  # milliseconds
        definitions = list(item.get("ChannelDefinitionSequence") or [])
        for number in range(raw.shape[1]):
            channel = definitions[number] if number < len(definitions) else None
            group.channels.append(_channel(channel, raw[:, number], pad, number, frequency, offset))
        groups.append(group)
    return groups


def _channel(definition: Any, stored: np.ndarray, pad: np.ndarray | None, number: int, frequency: float,
             offset: float) -> Channel:
    values = stored.astype(np.float64)
    if pad is not None and pad.size:
        values[stored == pad[0]] = np.nan
    if definition is None:
        return Channel(f"channel {number + 1}", str(number + 1), values, "", "", frequency, offset)
    label = (code_text(definition, "ChannelSourceSequence")[0] or str(definition.get("ChannelLabel") or "")
             or f"channel {number + 1}")
    units, meaning = "", ""
    if definition.get("ChannelSensitivity") is not None:
        sensitivity = _float(definition.ChannelSensitivity, 1.0)
        correction = _float(definition.get("ChannelSensitivityCorrectionFactor"), 1.0)
        baseline = _float(definition.get("ChannelBaseline"), 0.0)
        values = values * (sensitivity * correction) + baseline
        units = unit_text(definition, "ChannelSensitivityUnitsSequence")
        meaning = code_text(definition, "ChannelSensitivityUnitsSequence")[0]
    skew = _float(definition.get("ChannelSampleSkew"), 0.0) / 1000.0
    short = str(definition.get("ChannelLabel") or "") or _short_name(label)
    return Channel(label, short, values, units, meaning, frequency, offset + skew)


def _title(ds: Any, what: str) -> str:
    name = format_person_name(ds.PatientName) if ds.get("PatientName") else ""
    when = format_datetime(ds.get("AcquisitionDateTime")) if ds.get("AcquisitionDateTime") else ""
    return " · ".join(p for p in (what, name, when) if p)


# -- plotting --------------------------------------------------------------------------------------
def _envelope(time: np.ndarray, values: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``columns`` bins as its minimum then maximum: the drawn shape of a long signal."""
    usable = (values.shape[0] // columns) * columns
    if usable == 0:
        return time, values
    bins = values[:usable].reshape(columns, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN bin is a gap, not an error
        low, high = np.nanmin(bins, axis=1), np.nanmax(bins, axis=1)
    times = time[:usable].reshape(columns, -1)
    return np.repeat(times[:, 0], 2), np.column_stack([low, high]).ravel()


def plot_group(group: MultiplexGroup, start: float = 0.0, duration: float | None = None,
               title: str = "") -> Any:
    """A matplotlib figure of a multiplex group: one row per channel, time in seconds.

    Parameters
    ----------
    group : MultiplexGroup
        What to plot.
    start, duration : float
        The time window in seconds from the group's start (default: all of it).
    title : str
        The figure's title.
    """
    from dicomnb.core.deps import import_optional_dependency

    import_optional_dependency("matplotlib", "notebook")
    from matplotlib.figure import Figure

    end = group.duration if duration is None else min(group.duration, start + duration)
    rows = max(1, len(group.channels))
    height = 1.0 + 0.85 * rows
    # Fixed margins, not a layout engine: laying out a dozen axes costs more than drawing them.
    figure = Figure(figsize=(12, height))
    figure.subplots_adjust(left=0.07, right=0.99, top=1 - 0.62 / height, bottom=0.4 / height, hspace=0.12)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    paper = end - start <= 12
    for ax, channel in zip(axes, group.channels, strict=False):
        time = channel.time
        first, last = np.searchsorted(time, [start, end], side="left")
        t, v = time[first:last], channel.samples[first:last]
        if t.shape[0] > MAX_PLOTTED_SAMPLES:
            t, v = _envelope(t, v, MAX_PLOTTED_SAMPLES // 2)
        ax.plot(t, v, color="#111", linewidth=0.6)
        ax.set_ylabel(channel.short + (f"\n{channel.units}" if channel.units else ""), rotation=0,
                      ha="right", va="center", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_xlim(start, end)
        if paper:  # ECG paper: 0.04 s small and 0.2 s large squares, drawn as two line collections
            for step, colour, width in ((0.04, "#f8dede", 0.4), (0.2, "#eeaaaa", 0.6)):
                lines = np.arange(math.ceil(start / step) * step, end, step)
                ax.vlines(lines, 0, 1, transform=ax.get_xaxis_transform(), colors=colour, linewidth=width,
                          zorder=0)
        ax.grid(axis="y" if paper else "both", color="#eeaaaa", linewidth=0.6)
    axes[-1].set_xlabel("time (s)", fontsize=9)
    figure.suptitle(title or group.describe(), fontsize=10)
    return figure


def _figure_png(figure: Any, dpi: int = 80) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=dpi)
    return out.getvalue()


def _annotations(ds: Any) -> tuple[list[str], list[str]]:
    """Waveform annotations as text: ``(statements and measurements, marks at times or samples)``."""
    said, marks = [], []
    for item in ds.get("WaveformAnnotationSequence") or []:
        concept = code_text(item, "ConceptNameCodeSequence")[0]
        if item.get("UnformattedTextValue"):
            said.append(str(item.UnformattedTextValue))
        elif item.get("NumericValue") is not None and str(item.NumericValue) != "":
            said.append(f"{concept}: {item.NumericValue} {unit_text(item)}".strip())
        elif item.get("TemporalRangeType"):
            marks.append(f"{concept or code_text(item, 'ConceptCodeSequence')[0]}: {temporal_text(item)}")
        elif concept:
            said.append(concept + (f": {code_text(item, 'ConceptCodeSequence')[0]}"
                                   if item.get("ConceptCodeSequence") else ""))
    return said, marks


# -- the views -------------------------------------------------------------------------------------
class WaveformView(View):
    """A waveform (12-lead ECG, hemodynamic, respiratory...) plotted channel by channel.

    Parameters
    ----------
    source : InstanceRecord, str, path or pydicom.Dataset
        The waveform object.
    title : str
        The view's one-line title (default: SOP class, patient, acquisition time).

    Attributes
    ----------
    dataset : pydicom.Dataset
    groups : list of MultiplexGroup
        Every multiplex group, channels scaled.
    leads : list of Channel
        The channels of the first group (the rhythm strip of an ECG), as plotted first.

    Raises
    ------
    InputError
        No waveform in the source, or waveform data that cannot be read.
    """

    kind = "waveform"

    def __init__(self, source: InstanceRecord | str | os.PathLike[str] | Any, *, title: str = "") -> None:
        from pydicom.uid import UID

        self.dataset = read_dataset(source)
        self.groups = read_groups(self.dataset)
        what = UID(str(self.dataset.get("SOPClassUID") or "")).name or "Waveform"
        super().__init__(title or _title(self.dataset, what))
        self._html: str | None = None

    @property
    def leads(self) -> list[Channel]:
        return self.groups[0].channels

    def figure(self, group: int = 0, *, start: float = 0.0, duration: float | None = None) -> Any:
        """A matplotlib :class:`~matplotlib.figure.Figure` of one multiplex group (see :func:`plot_group`)."""
        chosen = self.groups[group]
        return plot_group(chosen, start, duration, f"{self.title}\n{chosen.describe()}")

    def png(self, group: int = 0, *, start: float = 0.0, duration: float | None = None) -> bytes:
        """One multiplex group plotted, as PNG bytes."""
        return _figure_png(self.figure(group, start=start, duration=duration))

    def _annotations_html(self) -> str:
        said, marks = _annotations(self.dataset)
        parts = []
        if said:
            parts.append("<div class='dicomnb-waveform-annotations'>" + "; ".join(html.escape(s) for s in said)
                         + "</div>")
        if marks:
            items = "".join(f"<li>{html.escape(m)}</li>" for m in marks)
            parts.append(f"<details><summary>{len(marks)} marks</summary><ul>{items}</ul></details>")
        return "".join(parts)

    def html(self) -> str:
        """Every multiplex group plotted (PNG), with the file's annotations and measurements."""
        if self._html is None:  # drawing a dozen leads takes a while: once per view is enough
            self._html = self._static_html()
        return self._html

    def _static_html(self) -> str:
        parts = [f"<div class='dicomnb-waveform'><b>{html.escape(self.title)}</b>", self._annotations_html()]
        for group in self.groups:
            parts.append(f"<div>{html.escape(group.describe())}</div>")
            parts.append(png_html(self.png(group.index), alt=f"{group.label}: {len(group.channels)} channels"))
        parts.append("</div>")
        return "".join(parts)

    def build_widget(self) -> Any:
        """The plot with a multiplex group chooser and a time window (start, width)."""
        import ipywidgets as widgets

        group = widgets.Dropdown(options=[(g.describe(), g.index) for g in self.groups], value=0,
                                 description="Group", layout=widgets.Layout(width="520px"))
        width = widgets.Dropdown(options=[("all", 0.0), ("10 s", 10.0), ("5 s", 5.0), ("2.5 s", 2.5), ("1 s", 1.0)],
                                 value=0.0, description="Window")
        start = widgets.FloatSlider(value=0.0, min=0.0, max=0.0, step=0.1, description="Start (s)",
                                    continuous_update=False, layout=widgets.Layout(width="520px"))
        image = widgets.Image(format="png", value=self.png(0))

        def render(_: Any = None) -> None:
            chosen = self.groups[group.value]
            window = width.value or chosen.duration
            start.max = max(0.0, chosen.duration - window)
            start.disabled = start.max == 0.0
            image.value = self.png(group.value, start=min(start.value, start.max), duration=window)

        for control in (group, width, start):
            control.observe(render, names="value")
        render()
        header = widgets.HTML(f"<b>{html.escape(self.title)}</b>{self._annotations_html()}")
        return widgets.VBox([header, widgets.HBox([group, width]), start, image])


def is_waveform(sop_class_uid: str | None) -> bool:
    """True for the waveform SOP classes (ECG, hemodynamic, respiratory, audio...: 1.2.840.10008.5.1.4.1.1.9.x)."""
    return bool(sop_class_uid) and str(sop_class_uid).startswith("1.2.840.10008.5.1.4.1.1.9.")


def is_audio(ds: Any) -> bool:
    """True for an audio waveform: Basic Voice Audio, General Audio, or modality ``AU``."""
    return str(ds.get("SOPClassUID") or "") in AUDIO_SOP_CLASSES or str(ds.get("Modality") or "") == "AU"


def _pcm16(group: MultiplexGroup, ds_item: Any) -> np.ndarray:
    """A group's stored samples as 16-bit PCM (what every browser plays), ``(samples, channels)``."""
    raw = group.raw
    kind = group.interpretation
    if kind in ("MB", "AB") or raw.dtype == np.int16:
        return raw.astype(np.int16)
    if raw.dtype == np.int8:
        return raw.astype(np.int16) << 8
    if raw.dtype == np.uint8:
        return (raw.astype(np.int16) - 128) << 8
    if raw.dtype == np.uint16:
        return (raw.astype(np.int32) - 32768).astype(np.int16)
    # 32- and 64-bit samples: keep the top 16 of the bits the channels use
    stored = [int(d.get("WaveformBitsStored") or 0) for d in ds_item.get("ChannelDefinitionSequence") or []]
    bits = max([b for b in stored if b] or [raw.dtype.itemsize * 8])
    values = raw.astype(np.float64)
    if raw.dtype.kind == "u":
        values -= 2.0 ** (bits - 1)
    scaled = np.round(values / 2.0 ** max(bits - 16, 0))
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    """16-bit PCM samples ``(samples, channels)`` as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(pcm.shape[1] if pcm.ndim == 2 else 1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
    return out.getvalue()


class AudioView(View):
    """An audio waveform, playable in the page (a WAV in an ``<audio controls>`` element).

    Parameters
    ----------
    source : InstanceRecord, str, path or pydicom.Dataset
        Basic Voice Audio, General Audio, or any waveform of modality ``AU``.
    title : str
        The view's one-line title.

    Attributes
    ----------
    dataset : pydicom.Dataset
    groups : list of MultiplexGroup
        Its multiplex groups; each one is a sound (channels are its tracks).

    Raises
    ------
    InputError
        No waveform, unreadable samples, or a sampling frequency no WAV can carry.
    """

    kind = "audio"

    def __init__(self, source: InstanceRecord | str | os.PathLike[str] | Any, *, title: str = "") -> None:
        self.dataset = read_dataset(source)
        self.groups = read_groups(self.dataset)
        for group in self.groups:
            if not 1 <= round(group.sampling_frequency) <= 2**31 - 1:
                raise InputError(f"{group.label}: a sampling frequency of {group.sampling_frequency:g} Hz "
                                 "cannot be played")
        super().__init__(title or _title(self.dataset, "Audio"))

    def pcm(self, group: int = 0) -> np.ndarray:
        """One group's samples as 16-bit PCM, ``(samples, channels)``."""
        chosen = self.groups[group]
        return _pcm16(chosen, self.dataset.WaveformSequence[chosen.index])

    def rate(self, group: int = 0) -> int:
        """One group's sampling frequency as a WAV frame rate (whole hertz)."""
        return int(round(self.groups[group].sampling_frequency))

    def wav(self, group: int = 0) -> bytes:
        """One group as a WAV file (16-bit PCM)."""
        return wav_bytes(self.pcm(group), self.rate(group))

    def save(self, path: str | os.PathLike[str], group: int = 0) -> None:
        """Write one group as a WAV file at ``path``."""
        with open(path, "wb") as out:
            out.write(self.wav(group))

    def html(self) -> str:
        """One player per multiplex group (or a note where the sound is too large to embed)."""
        parts = [f"<div class='dicomnb-audio'><b>{html.escape(self.title)}</b>"]
        for group in self.groups:
            data = self.wav(group.index)
            parts.append(f"<div>{html.escape(group.describe())}</div>")
            if len(data) > documents.EMBED_LIMIT:  # it would live in the notebook file
                parts.append(f"<div class='dicomnb-too-large'>{len(data) / 2**20:.1f} MB of sound is more than "
                             f"the {documents.EMBED_LIMIT / 2**20:g} MB embedded in a notebook: write it out with "
                             f"<code>view.save('sound.wav', group={group.index})</code></div>")
                continue
            encoded = base64.b64encode(data).decode("ascii")
            parts.append(f'<audio controls preload="metadata" src="data:audio/wav;base64,{encoded}"></audio>')
        parts.append("</div>")
        return "".join(parts)
