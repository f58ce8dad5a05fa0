"""``python -m helpers``: the command line (see ``helpers.cli``)."""

import sys

from .cli import main

sys.exit(main())
