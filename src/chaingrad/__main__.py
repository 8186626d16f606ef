"""`python -m chaingrad`: the same as the `chaingrad` command."""

import sys

from .cli import main

sys.exit(main())
