"""The Query/Retrieve tab's archives: the choice of node and method, the calling node, the node editor.

- :func:`archive_options`: the saved nodes (DIMSE and DICOMweb) and the embedded demo
  archive, which is offered even when it is not running and is started on first use
  (:func:`resolve_archive`).
- :func:`method_options`: the retrieve methods a node takes (C-GET, C-MOVE, and WADO-URI when
  it has a WADO-URI URL; a DICOMweb node needs no choice: WADO-RS).
- :class:`CallingEditor`: our own AE title and the port of our Storage SCP (the C-MOVE
  destination), saved at once.
- :class:`NodeEditor`: add, change, remove and test a node. A node with an AE title, host
  and port is a DIMSE node (its URL, optional, is its WADO-URI base); one with only a URL
  is a DICOMweb node. Test sends a C-ECHO, or a one-study QIDO-RS search (:func:`dicomnb.echo`).
"""

from __future__ import annotations

import dataclasses
import html
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import dicomnb
from dicomnb.core.deps import import_optional_dependency
from dicomnb.core.errors import ConfigError, DicomnbError
from dicomnb.core.nodes import AnyNode, CallingNode, DicomNode, DicomWebNode, NodeStore
from dicomnb.retrieving import NODE_METHODS
from dicomnb.widgets.common import Alert, Task, Worker, button

if TYPE_CHECKING:
    import ipywidgets as widgets
else:
    widgets = import_optional_dependency("ipywidgets", "notebook")

__all__ = ["DEMO_LABEL", "METHOD_LABELS", "CallingEditor", "NodeEditor", "archive_options", "demo_name",
           "method_options", "resolve_archive", "saved_node"]

#: How the archive dropdown names the embedded demo archive.
DEMO_LABEL = "the embedded demo archive"
#: The retrieve methods as the method dropdown names them.
METHOD_LABELS = {"c-get": "C-GET", "c-move": "C-MOVE", "wado-uri": "WADO-URI", "wado-rs": "WADO-RS"}


def demo_name() -> str:
    """The name of the demo archive's node (``"demo"``)."""
    from dicomnb.demo import NODE_NAME  # imported when used, as dicomnb does

    return NODE_NAME


def archive_options() -> list[tuple[str, str]]:
    """The archive dropdown's options, ``(label, node name)``: saved nodes, then the demo archive.

    Raises
    ------
    ConfigError
        The saved nodes cannot be read.
    """
    demo = demo_name()
    options = [(f"{node.name} — {node.describe()}", node.name) for node in dicomnb.nodes() if node.name != demo]
    return [*options, (DEMO_LABEL, demo)]


def resolve_archive(name: str) -> str:
    """The name to query: ``name``, after starting the demo archive when it is the demo's.

    Raises
    ------
    DemoFailed, DependencyMissing
        The demo archive cannot start.
    """
    if name == demo_name():
        import dicomnb.demo

        return dicomnb.demo.start().node.name
    return name


def saved_node(name: str | None) -> AnyNode | None:
    """The saved node ``name``, or None (not saved, or the demo archive not started yet)."""
    if not name:
        return None
    try:
        return dicomnb.get_node(name)
    except ConfigError:
        return None


def method_options(node: AnyNode | None) -> list[tuple[str, str]]:
    """The retrieve methods of ``node`` (a DIMSE node when None: the demo before it starts)."""
    kind = node.kind if node is not None else DicomNode.kind
    methods = [m for m in NODE_METHODS[kind] if m != "wado-uri" or getattr(node, "wado_url", None)]
    return [(METHOD_LABELS.get(method, method), method) for method in methods]


def _text(css: str, description: str, placeholder: str = "", width: str = "16em") -> widgets.Text:
    text = widgets.Text(description=description, placeholder=placeholder, layout=widgets.Layout(width=width))
    text.add_class(css)
    return text


class CallingEditor:
    """Our AE title (``dicomnb-qr-calling``) and Storage SCP port (``dicomnb-qr-calling-port``).

    A change is saved at once (the saved calling node); a running demo archive is told its
    new C-MOVE destination. A value that is not valid is put back and the alert says why.
    """

    def __init__(self, alert: Alert) -> None:
        self.alert = alert
        calling = self._load()
        self.aet = widgets.Text(value=calling.aet, description="Calling AE", continuous_update=False,
                                tooltip="Our AE title: archives must know it (with our port) for C-MOVE",
                                layout=widgets.Layout(width="14em"))
        self.aet.add_class("dicomnb-qr-calling")
        self.port = widgets.BoundedIntText(value=calling.port, min=1, max=65535, description="Our port",
                                           tooltip="The port of our Storage SCP during a C-MOVE",
                                           layout=widgets.Layout(width="12em"))
        self.port.add_class("dicomnb-qr-calling-port")
        self._quiet = False
        self.aet.observe(lambda _: self.save(), names="value")
        self.port.observe(lambda _: self.save(), names="value")

    def _load(self) -> CallingNode:
        try:
            return NodeStore.load().calling
        except DicomnbError as exc:
            self.alert.error(exc)
            return CallingNode()

    def save(self) -> bool:
        """Save the AE title and port shown as the calling node; False (values put back) if not valid."""
        if self._quiet:
            return False
        try:
            store = NodeStore.load()
            calling = CallingNode(aet=self.aet.value, port=self.port.value, host=store.calling.host)
            if calling != store.calling:
                store.set_calling(calling)
                self._tell_demo()
        except DicomnbError as exc:
            self.alert.error(exc)
            self.show(self._load())
            return False
        self.show(calling)
        return True

    def show(self, calling: CallingNode) -> None:
        self._quiet = True
        try:
            self.aet.value, self.port.value = calling.aet, calling.port
        finally:
            self._quiet = False

    @staticmethod
    def _tell_demo() -> None:
        import dicomnb.demo

        if dicomnb.demo.running() is not None:
            dicomnb.demo.start()  # tells the running archive the new C-MOVE destination


class NodeEditor(widgets.VBox):
    """Add, change, remove and test nodes (the "More options" part of the Query/Retrieve tab).

    Parameters
    ----------
    alert : Alert
        The dialog's alert (a node that cannot be saved says why there).
    on_saved : callable, optional
        ``on_saved(name)`` after a node was saved, ``on_saved(None)`` after one was removed.

    Attributes
    ----------
    name, aet, host, port, url : Text
        ``dicomnb-nodes-name``, ``-aet``, ``-host``, ``-port``, ``-url`` (a DIMSE node's WADO-URI
        base, or a DICOMweb node's URL when AE title, host and port are empty).
    kind : HTML
        What kind of node the fields make (``dicomnb-nodes-kind``).
    new, save, remove, test : Button
        ``dicomnb-nodes-new``, ``-save``, ``-remove``, ``-test``.
    result : HTML
        The test's outcome (``dicomnb-nodes-result``); ``last_test`` is True, False or None.
    """

    def __init__(self, alert: Alert, on_saved: Callable[[str | None], object] | None = None) -> None:
        super().__init__()
        self.add_class("dicomnb-nodes")
        self.alert = alert
        self.on_saved = on_saved
        self.last_test: bool | None = None
        self.name = _text("dicomnb-nodes-name", "Name", "pacs")
        self.aet = _text("dicomnb-nodes-aet", "AE title", "ORTHANC")
        self.host = _text("dicomnb-nodes-host", "Host", "127.0.0.1")
        self.port = _text("dicomnb-nodes-port", "Port", "4242", width="10em")
        self.url = _text("dicomnb-nodes-url", "URL", "http://host:8042/dicom-web", width="30em")
        self.kind = widgets.HTML()
        self.kind.add_class("dicomnb-nodes-kind")
        self.new = button("New", "dicomnb-nodes-new", "Empty the fields, to add a node")
        self.save = button("Save", "dicomnb-nodes-save", "Save the node (replacing one of that name)")
        self.remove = button("Remove", "dicomnb-nodes-remove", "Remove the saved node of this name")
        self.test = button("Test", "dicomnb-nodes-test", "C-ECHO (DIMSE) or a one-study QIDO-RS search (DICOMweb)")
        self.result = widgets.HTML()
        self.result.add_class("dicomnb-nodes-result")
        self.worker = Worker(alert)
        for field in (self.name, self.aet, self.host, self.port, self.url):
            field.observe(lambda _: self._show_kind(), names="value")
        self.new.on_click(lambda _: self.load(None))
        self.save.on_click(lambda _: self.save_node())
        self.remove.on_click(lambda _: self.remove_node())
        self.test.on_click(lambda _: self.test_node())
        help_text = widgets.HTML("<small>A DIMSE node: AE title, host and port (the URL, optional, is its "
                                 "WADO-URI base, such as http://host:8042/wado). A DICOMweb node: only its URL. "
                                 "TLS and authentication settings of a saved node are kept "
                                 "(set them with dicomnb.add_node).</small>")
        self.children = (
            widgets.HBox([self.name, self.aet, self.host, self.port], layout=widgets.Layout(flex_flow="row wrap")),
            widgets.HBox([self.url, self.kind], layout=widgets.Layout(align_items="center")),
            widgets.HBox([self.new, self.save, self.remove, self.test, self.result],
                         layout=widgets.Layout(align_items="center")),
            help_text,
        )
        self._show_kind()

    # -- fields --------------------------------------------------------------------------------------
    def load(self, node: AnyNode | None, name: str = "") -> None:
        """Show ``node`` in the fields (empty fields, named ``name``, when None).

        A test under way is dropped: its outcome is about the node shown before.
        """
        self.worker.cancel()
        self.name.value = node.name if node is not None else name
        if isinstance(node, DicomNode):
            self.aet.value, self.host.value, self.port.value = node.aet, node.host, str(node.port)
            self.url.value = node.wado_url or ""
        else:
            self.aet.value = self.host.value = self.port.value = ""
            self.url.value = node.url if node is not None else ""
        self.result.value = ""
        self.last_test = None
        self._show_kind()

    def _dimse_fields(self) -> bool:
        return any(field.value.strip() for field in (self.aet, self.host, self.port))

    def _show_kind(self) -> None:
        if self._dimse_fields():
            text = "a DIMSE node" + (" (retrieves by WADO-URI too)" if self.url.value.strip() else "")
        elif self.url.value.strip():
            text = "a DICOMweb node"
        elif self.name.value.strip() == demo_name():
            text = DEMO_LABEL + ": it starts on first use"
        else:
            text = ""
        self.kind.value = f"<i>{html.escape(text)}</i>" if text else ""

    def node_from_fields(self) -> AnyNode:
        """The node the fields describe (a saved node's TLS or authentication settings kept).

        Raises
        ------
        ConfigError
            A field is missing or not valid; the message says which.
        """
        name = self.name.value.strip()
        if not name:
            raise ConfigError("the node name is blank: give a short name such as 'pacs'")
        existing = saved_node(name)
        url = self.url.value.strip() or None
        if self._dimse_fields():
            aet, host, port = self.aet.value.strip(), self.host.value.strip(), self.port.value.strip()
            if not (aet and host and port):
                raise ConfigError(f"node {name!r} needs an AE title, a host and a port "
                                  "(or only a URL for a DICOMweb node)")
            if isinstance(existing, DicomNode):
                return dataclasses.replace(existing, aet=aet, host=host, port=port, wado_url=url)
            return DicomNode(name=name, aet=aet, host=host, port=port, wado_url=url)  # type: ignore[arg-type]
        if url is None:
            raise ConfigError(f"node {name!r} needs an AE title, a host and a port (DIMSE) or a URL (DICOMweb)")
        if isinstance(existing, DicomWebNode):
            return dataclasses.replace(existing, url=url)
        return DicomWebNode(name=name, url=url)

    # -- verbs ---------------------------------------------------------------------------------------
    def save_node(self) -> AnyNode | None:
        """Save the node of the fields (replacing one of that name); None when it cannot be."""
        try:
            node = self.node_from_fields()
            if isinstance(node, DicomWebNode):
                saved = dicomnb.add_node(node.name, dicomweb=node.url, qido_url=node.qido_url,
                                         wado_rs_url=node.wado_url, headers=dict(node.headers), auth=node.auth,
                                         user=node.user, secret_env=node.secret_env, replace=True)
            else:
                saved = dicomnb.add_node(node.name, node.aet, node.host, node.port, wado_url=node.wado_url,
                                         tls_ca=node.tls_ca, tls_cert=node.tls_cert, tls_key=node.tls_key,
                                         replace=True)
        except DicomnbError as exc:
            self.alert.error(exc)
            return None
        self.alert.show(f"Saved the node {saved.name!r}: {saved.describe()}.", "success")
        if self.on_saved is not None:
            self.on_saved(saved.name)
        return saved

    def remove_node(self) -> bool:
        """Remove the saved node named in the fields; False (the alert says why) if there is none."""
        name = self.name.value.strip()
        try:
            dicomnb.remove_node(name)
        except DicomnbError as exc:
            self.alert.error(exc)
            return False
        self.alert.show(f"Removed the node {name!r}.", "success")
        self.load(None)
        if self.on_saved is not None:
            self.on_saved(None)
        return True

    def test_node(self) -> Task[tuple[bool, str]]:
        """Test the node of the fields off the main thread; the outcome shows in :attr:`result`."""
        self.result.value = "<i>Testing…</i>"
        self.last_test = None
        name = self.name.value.strip()
        demo = name == demo_name() and not self._dimse_fields() and not self.url.value.strip()
        node: AnyNode | str = name
        problem = ""
        if not demo:
            try:
                node = self.node_from_fields()
            except DicomnbError as exc:
                problem = str(exc)

        def work(cancel: threading.Event) -> tuple[bool, str]:
            if problem:
                return False, problem
            try:
                target = resolve_archive(name) if demo else node
                seconds = dicomnb.echo(target)
            except DicomnbError as exc:
                return False, str(exc)
            kind = "the QIDO-RS search" if isinstance(target, DicomWebNode) else "the C-ECHO"
            return True, f"{name} answered {kind} in {seconds * 1000:.0f} ms"

        return self.worker.run("Test", work, self._show_test)

    def _show_test(self, outcome: tuple[bool, str]) -> None:
        ok, text = outcome
        self.last_test = ok
        colour = "#1b5e20" if ok else "#b71c1c"
        self.result.value = f'<span style="color:{colour}">{"✓" if ok else "✗"} {html.escape(text)}</span>'

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a test under way (False on timeout)."""
        return self.worker.wait(timeout)

