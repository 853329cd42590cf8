"""``python -m dicomnb``: the command line."""

import sys

from dicomnb.cli import main

sys.exit(main())
