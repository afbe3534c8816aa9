"""``python -m netdsl`` is the ``netdsl`` command (what ``torchrun -m netdsl`` runs)."""

import sys

from netdsl.cli import main

sys.exit(main())
