"""The worker process: ``python -m snakepit.worker`` (see :mod:`snakepit.worker._main`)."""
