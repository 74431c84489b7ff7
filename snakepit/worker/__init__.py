"""Worker side of the crash barrier: the protocol, the codec, the worker loop."""
