"""``python -m mcdns``: the same as the ``mcdns`` command."""

import sys

from mcdns.cli import main

sys.exit(main())
