"""``python -m snakepit.worker``: run one worker process."""

import sys

from snakepit.worker._main import main

sys.exit(main())
