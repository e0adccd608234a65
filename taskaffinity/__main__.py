"""``python -m taskaffinity`` (and ``torchrun -m taskaffinity``): the command line."""

import sys

from .cli import main

sys.exit(main())
