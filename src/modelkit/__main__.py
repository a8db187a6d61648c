"""``python -m modelkit``: the same as the ``modelkit`` command."""

import sys

from modelkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
