"""``python -m hub.cli``: the same as the ``edx-hub`` console script."""

import sys

from . import main

sys.exit(main())
