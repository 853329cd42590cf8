"""The import dialog's widgets (ipywidgets): they gather input, call the core, show its results.

They hold no DICOM logic: what a widget shows comes from the core (the catalog, the
download manager's progress), and what a button does is one call to it.
"""
