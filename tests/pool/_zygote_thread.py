"""Preloading this module leaves a thread running in the template."""

import threading
import time

threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
