"""DICOM ZIP archives (placeholder until the ZIP source lands)."""


class ZipSource:
    def __init__(self, path, password=None):  # type: ignore[no-untyped-def]
        raise NotImplementedError
