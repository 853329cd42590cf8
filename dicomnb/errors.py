"""dicomnb's exceptions (one tree, see :mod:`dicomnb.core.errors`)."""

from dicomnb.core.errors import *  # noqa: F403
from dicomnb.core.errors import __all__  # noqa: F401
