"""Entry script of the frozen edx-agent (PyInstaller): the same ``main()`` as the ``edx-agent`` console script."""

import sys

from agent.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
