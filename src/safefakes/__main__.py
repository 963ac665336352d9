"""``python -m safefakes`` runs the command line."""

import sys

from safefakes.cli import main

sys.exit(main())
