"""The passwords and tokens of DICOMweb nodes: read, kept in memory, never written or shown.

A node's secret comes, in this order, from:

1. the environment variable the node names (``secret_env``), read at each request so a
   rotated token is picked up;
2. a secret given in this process with :func:`set_secret` (or asked for once by the
   prompt and then remembered in memory until the process ends);
3. a prompt, when one is possible: ``getpass`` on a terminal, or the password box Jupyter
   shows for ``getpass`` in a notebook.

It is never written to the node file, the presets, a URL, a log, an error message or a
repr: :class:`Secret` shows itself as ``Secret('********')`` and refuses to be pickled.
"""

from __future__ import annotations

import base64
import getpass
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from dicomnb.core.errors import ConfigError

if TYPE_CHECKING:
    from dicomnb.core.nodes import DicomWebNode

__all__ = ["Secret", "authorization", "forget_secret", "secret_for", "set_secret"]


class Secret:
    """A password or token that does not show itself.

    ``str()``, ``repr()`` and f-strings give ``********``; :meth:`reveal` gives the value.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise ConfigError(f"a secret must be text, not {type(value).__name__}")
        if any(c in value for c in "\r\n\0"):
            raise ConfigError("a secret must be one line of text")
        self._value = value

    def reveal(self) -> str:
        """The secret itself (for the Authorization header only)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "********"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled (it would end up on disk)")


_remembered: dict[str, Secret] = {}
_lock = threading.Lock()


def set_secret(node: str, secret: str | Secret | None = None) -> None:
    """Give the password or token of the DICOMweb node ``node`` for this process.

    With no ``secret``, ask for it (``getpass``: a password box in a notebook). It is kept in
    memory only; an environment variable named by the node still wins.
    """
    if secret is None:
        secret = _ask(node)
    with _lock:
        _remembered[node] = secret if isinstance(secret, Secret) else Secret(secret)


def forget_secret(node: str) -> None:
    """Forget the secret given for ``node`` in this process (nothing happens if there is none)."""
    with _lock:
        _remembered.pop(node, None)


def _can_prompt() -> bool:
    if "ipykernel" in sys.modules:  # a notebook: getpass shows a password box
        try:
            from IPython import get_ipython

            return get_ipython() is not None and bool(getattr(get_ipython(), "kernel", None))
        except ImportError:
            return False
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _ask(node: str) -> Secret:
    try:
        value = getpass.getpass(f"Password or token of {node}: ")
    except (EOFError, KeyboardInterrupt, OSError) as exc:
        raise ConfigError(f"no password or token given for {node}") from exc
    if not value:
        raise ConfigError(f"no password or token given for {node}")
    return Secret(value)


def secret_for(node: DicomWebNode, *, prompt: Callable[[str], Secret] | None = None) -> Secret | None:
    """The secret ``node`` authenticates with, or None when it uses no authentication.

    Parameters
    ----------
    node : DicomWebNode
        The node.
    prompt : callable, optional
        Asks for the secret when neither the environment nor this process has it (default:
        ``getpass`` when a terminal or a notebook can answer). It is remembered afterwards.

    Raises
    ------
    ConfigError
        The secret is needed and nowhere to be found; the message says how to give it.
    """
    if node.auth == "none":
        return None
    if node.secret_env:
        value = os.environ.get(node.secret_env)
        if value:
            return Secret(value)
    with _lock:
        remembered = _remembered.get(node.name)
    if remembered is not None:
        return remembered
    if prompt is None and _can_prompt():
        prompt = _ask
    if prompt is None:
        how = (f"set the environment variable {node.secret_env}" if node.secret_env
               else f"add --secret-env VAR to the node ('dicomnb node add {node.name} ... --replace')")
        raise ConfigError(f"node {node.name!r} needs its {'password' if node.auth == 'basic' else 'token'}: "
                          f"{how}, or call dicomnb.set_secret({node.name!r}) in Python")
    secret = prompt(node.name)
    with _lock:
        _remembered[node.name] = secret
    return secret


def authorization(node: DicomWebNode, secret: Secret | None) -> str | None:
    """The value of the ``Authorization`` header for ``node`` (None: send none)."""
    if node.auth == "none" or secret is None:
        return None
    if node.auth == "basic":
        pair = f"{node.user}:{secret.reveal()}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    return "Bearer " + secret.reveal()
