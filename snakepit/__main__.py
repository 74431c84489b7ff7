"""``python -m snakepit``: the ``snakepit`` console command."""

import sys

from snakepit.cli import main

if __name__ == "__main__":
    sys.exit(main())
