"""``python -m vmgga ...`` is the same as the ``vmgga`` script (Slicer runs it this way)."""

from __future__ import annotations

import sys

from vmgga.cli.main import main

sys.exit(main())
