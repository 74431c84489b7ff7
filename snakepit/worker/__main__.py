"""``python -m snakepit.worker``: run one worker process (or, with ``zygote``, a template)."""

import sys

if sys.argv[1:2] == ["zygote"]:
    from snakepit.worker._zygote import main as zygote_main

    sys.exit(zygote_main(sys.argv[2:]))

from snakepit.worker._main import main

sys.exit(main())
