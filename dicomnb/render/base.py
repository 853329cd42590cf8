"""What every inline view is: static HTML anywhere, interactive widgets in a live kernel.

A :class:`View` is what :func:`dicomnb.show` returns. Displayed as a cell's result, it
offers two representations at once: the widget (JupyterLab shows it when the kernel is
live and ipywidgets is installed) and a static ``text/html`` rendering (a PNG or an HTML
document) that a saved notebook keeps for readers without a kernel (nbviewer, GitHub,
nbconvert). Subclasses give :meth:`View.html`, and :meth:`View.widget` when they have
controls (window/level, a slice slider, a crosshair).
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

__all__ = ["View", "figure_html", "png_html", "title_html", "view_html"]


def png_html(png: bytes, *, alt: str = "", width: int | None = None) -> str:
    """An ``<img>`` tag embedding ``png`` as a data URI."""
    size = f' width="{width}"' if width else ""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"{size}/>'


def figure_html(figure: Any, *, alt: str = "", dpi: int = 100) -> str:
    """A matplotlib figure as an embedded PNG ``<img>`` tag."""
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=dpi, bbox_inches="tight")
    return png_html(out.getvalue(), alt=alt)


def title_html(title: str) -> str:
    """A view's title line (nothing when it has none)."""
    return f"<div><b>{html.escape(title)}</b></div>" if title else ""


def view_html(kind: str, title: str, body: str = "", *, error: BaseException | None = None,
              what: str = "This image") -> str:
    """A view's static HTML: its title over ``body``, or over what ``error`` says."""
    if error is not None:
        body = f"<div class='dicomnb-error'>{what} cannot be shown: {html.escape(str(error))}</div>"
    return f"<div class='dicomnb-view dicomnb-{kind}'>{title_html(title)}{body}</div>"


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class View:
    """An inline view of DICOM data (an image, a stack, MPR, an SR document, a waveform...).

    Attributes
    ----------
    kind : str
        Which viewer this is: ``"image"``, ``"stack"``, ``"mpr"``, ``"sr"``, ``"waveform"``,
        ``"audio"``, ``"pdf"``, ``"picture"`` or ``"attachments"``.
    title : str
        One line saying what is shown (patient, series, instance).
    """

    kind: str = "view"

    def __init__(self, title: str = "") -> None:
        self.title = title
        self._widget: Any = None

    def html(self) -> str:
        """The static rendering: an HTML fragment that needs no kernel."""
        raise NotImplementedError

    def build_widget(self) -> Any:
        """The interactive rendering (an ipywidgets widget); by default the static HTML."""
        import ipywidgets

        return ipywidgets.HTML(self.html())

    def widget(self) -> Any:
        """The interactive rendering, built once and kept (the same controls on every display).

        Raises
        ------
        DependencyMissing
            ipywidgets is not installed (``pip install 'dicomnb[notebook]'``).
        """
        if self._widget is None:
            from dicomnb.core.deps import import_optional_dependency

            import_optional_dependency("ipywidgets", "notebook")
            self._widget = self.build_widget()
        return self._widget

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": repr(self), "text/html": self.html()}
        if _in_kernel():
            try:
                widget = self.widget()
            except ImportError:
                return bundle
            shown = widget._repr_mimebundle_()
            if isinstance(shown, tuple):  # (data, metadata) in some ipywidgets versions
                shown = shown[0]
            bundle.update({k: v for k, v in shown.items() if k != "text/plain"})
        return bundle

    def __repr__(self) -> str:
        return f"<dicomnb {self.kind} view: {self.title}>" if self.title else f"<dicomnb {self.kind} view>"
