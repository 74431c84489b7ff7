"""The wire between the supervisor and its workers, shared by both sides.

:mod:`~snakepit._wire.protocol` frames messages on a private socketpair;
:mod:`~snakepit._wire.codec` pickles payloads, sending arrays, tensors and
tables as shared-memory descriptors through the carriers of
:mod:`snakepit.zero_copy`; :mod:`~snakepit._wire._pickling` holds the
pickling helpers the codec, the worker and the pool share.
"""
