"""``python -m helpers``: the command line (see ``helpers.commands``)."""

import sys

from .commands import main

sys.exit(main())
