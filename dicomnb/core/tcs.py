"""Transfer syntaxes to accept per SOP class when instances are retrieved (C-GET, C-MOVE).

The defaults keep what the archive holds: image storage classes accept the uncompressed
syntaxes and the usual compressed ones (JPEG, JPEG-LS, JPEG 2000, RLE, HTJ2K), so a
compressed instance arrives as stored instead of being decompressed by the archive; other
classes (SR, RT plans, waveforms, presentation states...) accept the uncompressed ones.

Like Weasis's ``store-tcs.properties``, a file in the configuration folder changes them:
``store-tcs.json`` or ``store-tcs.properties``. Keys are SOP Class UIDs or their pydicom
keywords (``CTImageStorage``), or ``*`` for every class not listed; values are lists of
Transfer Syntax UIDs or keywords (``ExplicitVRLittleEndian``), in order of preference::

    # store-tcs.properties
    CTImageStorage = ExplicitVRLittleEndian, ImplicitVRLittleEndian
    1.2.840.10008.5.1.4.1.1.4 = JPEG2000Lossless, ExplicitVRLittleEndian
    * = ExplicitVRLittleEndian, ImplicitVRLittleEndian

    // store-tcs.json
    {"CTImageStorage": ["ExplicitVRLittleEndian", "ImplicitVRLittleEndian"]}
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from dicomnb.core.config import config_dir, read_json_object
from dicomnb.core.errors import ConfigError

__all__ = ["COMMON_STORAGE", "IMAGE_SYNTAXES", "PLAIN_SYNTAXES", "TransferSyntaxes", "common_storage_classes",
           "transfer_syntaxes"]

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"

#: Accepted for every class: explicit and implicit little endian, deflated.
PLAIN_SYNTAXES: tuple[str, ...] = (EXPLICIT_LE, IMPLICIT_LE, "1.2.840.10008.1.2.1.99")

#: Accepted for image classes, after the plain ones: JPEG baseline, extended, lossless (SV1
#: and process 14), JPEG-LS lossless and near-lossless, JPEG 2000 lossless and lossy, RLE,
#: HTJ2K lossless, RPCL and lossy.
IMAGE_SYNTAXES: tuple[str, ...] = PLAIN_SYNTAXES + (
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
)

#: Storage SOP classes proposed when an archive does not say which classes a study holds
#: (dcmqrscp keeps no SOPClassUID in its index), as getscu does: the common ones, fewer than
#: 128 so that they fit in one association with the retrieve's own context.
COMMON_STORAGE: tuple[str, ...] = (
    "CTImageStorage", "EnhancedCTImageStorage", "LegacyConvertedEnhancedCTImageStorage",
    "MRImageStorage", "EnhancedMRImageStorage", "EnhancedMRColorImageStorage",
    "LegacyConvertedEnhancedMRImageStorage", "MRSpectroscopyStorage",
    "ComputedRadiographyImageStorage", "DigitalXRayImageStorageForPresentation",
    "DigitalXRayImageStorageForProcessing", "DigitalMammographyXRayImageStorageForPresentation",
    "DigitalMammographyXRayImageStorageForProcessing", "DigitalIntraOralXRayImageStorageForPresentation",
    "BreastTomosynthesisImageStorage", "UltrasoundImageStorage", "UltrasoundMultiFrameImageStorage",
    "EnhancedUSVolumeStorage", "SecondaryCaptureImageStorage",
    "MultiFrameSingleBitSecondaryCaptureImageStorage", "MultiFrameGrayscaleByteSecondaryCaptureImageStorage",
    "MultiFrameGrayscaleWordSecondaryCaptureImageStorage", "MultiFrameTrueColorSecondaryCaptureImageStorage",
    "XRayAngiographicImageStorage", "EnhancedXAImageStorage", "XRayRadiofluoroscopicImageStorage",
    "EnhancedXRFImageStorage", "XRay3DAngiographicImageStorage", "NuclearMedicineImageStorage",
    "PositronEmissionTomographyImageStorage", "EnhancedPETImageStorage",
    "LegacyConvertedEnhancedPETImageStorage", "RTImageStorage", "RTDoseStorage", "RTStructureSetStorage",
    "RTPlanStorage", "RTIonPlanStorage", "RTBeamsTreatmentRecordStorage", "RTBrachyTreatmentRecordStorage",
    "RTTreatmentSummaryRecordStorage", "RTIonBeamsTreatmentRecordStorage", "SegmentationStorage",
    "SurfaceSegmentationStorage", "ParametricMapStorage", "RealWorldValueMappingStorage",
    "SpatialRegistrationStorage", "DeformableSpatialRegistrationStorage", "SpatialFiducialsStorage",
    "RawDataStorage", "GrayscaleSoftcopyPresentationStateStorage", "ColorSoftcopyPresentationStateStorage",
    "PseudoColorSoftcopyPresentationStateStorage", "BlendingSoftcopyPresentationStateStorage",
    "KeyObjectSelectionDocumentStorage", "BasicTextSRStorage", "EnhancedSRStorage",
    "ComprehensiveSRStorage", "Comprehensive3DSRStorage", "ExtensibleSRStorage", "MammographyCADSRStorage",
    "ChestCADSRStorage", "XRayRadiationDoseSRStorage", "RadiopharmaceuticalRadiationDoseSRStorage",
    "EnhancedXRayRadiationDoseSRStorage", "ProcedureLogStorage", "EncapsulatedPDFStorage",
    "EncapsulatedCDAStorage", "EncapsulatedSTLStorage", "TwelveLeadECGWaveformStorage",
    "GeneralECGWaveformStorage", "AmbulatoryECGWaveformStorage", "HemodynamicWaveformStorage",
    "CardiacElectrophysiologyWaveformStorage", "BasicVoiceAudioWaveformStorage",
    "ArterialPulseWaveformStorage", "RespiratoryWaveformStorage", "VLEndoscopicImageStorage",
    "VideoEndoscopicImageStorage", "VLMicroscopicImageStorage", "VLSlideCoordinatesMicroscopicImageStorage",
    "VLPhotographicImageStorage", "VideoPhotographicImageStorage", "VLWholeSlideMicroscopyImageStorage",
    "OphthalmicPhotography8BitImageStorage", "OphthalmicPhotography16BitImageStorage",
    "OphthalmicTomographyImageStorage", "HangingProtocolStorage", "ColorPaletteStorage",
)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _resolve(name: str, what: str, source: Path) -> str:
    """A UID given as itself or as its pydicom keyword."""
    name = name.strip()
    if _UID.match(name) and len(name) <= 64:
        return name
    from pydicom.uid import UID_dictionary

    for uid, entry in UID_dictionary.items():
        if entry[4] == name:
            return str(uid)
    raise ConfigError(f"{source}: {name!r} is neither a {what} UID nor a pydicom keyword of one "
                      "(such as CTImageStorage or ExplicitVRLittleEndian): fix the file")


@functools.lru_cache(maxsize=512)
def _is_image_class(sop_class: str) -> bool:
    from pydicom.uid import UID

    name = UID(sop_class).name
    return "Image" in name or "Multi-frame" in name or name == sop_class  # unknown: may be an image


class TransferSyntaxes:
    """Transfer syntaxes accepted per SOP class: the defaults, changed by a config file.

    Parameters
    ----------
    overrides : mapping of str to sequence of str
        SOP Class UID (or ``*``) → Transfer Syntax UIDs, in order of preference.
    """

    def __init__(self, overrides: Mapping[str, Sequence[str]] | None = None) -> None:
        self.overrides = {key: tuple(value) for key, value in (overrides or {}).items()}

    def for_class(self, sop_class: str) -> tuple[str, ...]:
        """The transfer syntaxes accepted for ``sop_class``, preferred first."""
        if sop_class in self.overrides:
            return self.overrides[sop_class]
        if "*" in self.overrides:
            return self.overrides["*"]
        return IMAGE_SYNTAXES if _is_image_class(sop_class) else PLAIN_SYNTAXES

    @classmethod
    def load(cls, folder: Path | None = None) -> TransferSyntaxes:
        """The defaults, changed by ``store-tcs.json`` or ``store-tcs.properties`` in ``folder``.

        Raises
        ------
        ConfigError
            The file cannot be read, or names a class or a syntax that does not exist.
        """
        folder = folder if folder is not None else config_dir()
        json_file, properties = folder / "store-tcs.json", folder / "store-tcs.properties"
        raw: dict[str, object] = {}
        source = json_file
        data = read_json_object(json_file)
        if data is not None:
            raw = data
        elif properties.exists():
            source = properties
            try:
                text = properties.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read {properties}: {exc.strerror or exc}") from exc
            for number, line in enumerate(text.splitlines(), 1):
                line = line.strip()
                if not line or line.startswith(("#", "!")):
                    continue
                key, sep, value = line.partition("=")
                if not sep:
                    raise ConfigError(f"{properties}, line {number}: expected 'SOP class = syntax, ...'")
                raw[key.strip()] = [v for v in re.split(r"[,\s]+", value) if v]
        overrides: dict[str, tuple[str, ...]] = {}
        for key, listed in raw.items():
            if not isinstance(listed, list) or not listed or not all(isinstance(v, str) for v in listed):
                raise ConfigError(f"{source}: {key!r} must list at least one transfer syntax")
            sop_class = "*" if key.strip() == "*" else _resolve(key, "SOP class", source)
            overrides[sop_class] = tuple(_resolve(str(v), "transfer syntax", source) for v in listed)
        return cls(overrides)


@functools.lru_cache(maxsize=1)
def common_storage_classes() -> tuple[str, ...]:
    """:data:`COMMON_STORAGE` as UIDs (the keywords this pydicom does not know are left out)."""
    from pydicom.uid import UID_dictionary

    by_keyword = {entry[4]: str(uid) for uid, entry in UID_dictionary.items()}
    return tuple(by_keyword[k] for k in COMMON_STORAGE if k in by_keyword)


def transfer_syntaxes() -> TransferSyntaxes:
    """The transfer syntaxes in force (read from the configuration folder each time)."""
    return TransferSyntaxes.load()
