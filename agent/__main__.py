"""``python -m agent`` runs the ``edx-agent`` command line."""

import sys

from agent.cli.main import main

sys.exit(main())
