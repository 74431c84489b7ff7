"""``python -m snakepit.worker``: run one worker process (or, with ``zygote``, a template)."""

import sys

if sys.argv[1:2] == ["zygote"]:
    import gc

    # Before the imports, so that the template's objects stay packed in the
    # pages its workers share (see snakepit.worker._zygote).
    gc.disable()
    from snakepit.worker._zygote import main as zygote_main

    sys.exit(zygote_main(sys.argv[2:]))

from snakepit.worker._main import main

sys.exit(main())
