"""``python -m producers`` is ``vipflow``."""

import sys

from producers.cli import main

sys.exit(main())
