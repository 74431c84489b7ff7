"""Preloading this module kills the template before it says hello."""

import os

os._exit(3)
