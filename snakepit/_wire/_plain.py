"""What a payload is made of: whether the C pickler can take it as it is.

The codec's first look at every payload (:func:`scan`): plain data is
pickled at once, without a pickler object or any call back into Python.
"""

from __future__ import annotations

import pickle
from typing import Any

from snakepit.zero_copy import _host_arrays

from ._bulk import OUT_OF_BAND_BYTES

#: The pickle protocol of every payload (out-of-band buffers need 5).
PROTOCOL = 5
#: The pickles of a reply ``None`` and of a call's ``(args, kwargs)`` without
#: either: made once when encoding, compared (a ``memcmp``) before anything is
#: unpickled when decoding.
NONE_PAYLOAD = pickle.dumps(None, protocol=PROTOCOL)
NO_ARGUMENTS_PAYLOAD = pickle.dumps(((), {}), protocol=PROTOCOL)
#: Values made only of these types pickle the same with the plain C pickler,
#: which skips building a pickler object: the common small call is cheaper.
SCALARS = frozenset({type(None), bool, int, float, complex, str})
_STR = frozenset({str})
#: Most elements :func:`scan` looks at before it gives up and lets the
#: pickler decide (which costs nothing more for plain data).
PLAIN_BUDGET = 4096
#: What :func:`scan` finds: plain data; plain data with large ``bytes``;
#: anything else (with large bytes seen before it).
PLAIN, BIG_BYTES, OTHER, OTHER_BIG_BYTES = range(4)


def scan(obj: Any) -> int:
    """What ``obj`` is made of: :data:`PLAIN` if only scalars, small bytes,
    lists, tuples and str-keyed dicts (the C pickler takes it as it is);
    :data:`BIG_BYTES` if large ``bytes`` or ``bytearray`` are among them;
    :data:`OTHER` for anything else (:data:`OTHER_BIG_BYTES` if large bytes
    were seen before it).

    Flat containers are checked at C speed (the set of their item types);
    the walk stops after :data:`PLAIN_BUDGET` elements, so a huge argument
    costs a bounded look.
    """
    budget = PLAIN_BUDGET
    found = PLAIN
    stack = [obj]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in SCALARS:
            continue
        if kind is bytes or kind is bytearray:
            if len(item) >= OUT_OF_BAND_BYTES:
                found = BIG_BYTES
            continue
        if kind is tuple or kind is list:
            budget -= 1 + len(item)
            if budget < 0:
                break
            if set(map(type, item)) <= SCALARS:
                continue
            stack.extend(item)
        elif kind is dict:
            budget -= 1 + len(item)
            if budget < 0 or not set(map(type, item)) <= _STR:
                break
            values = item.values()
            if set(map(type, values)) <= SCALARS:
                continue
            stack.extend(values)
        else:
            # A DLPack array of a library with no carrier (JAX...) is learned
            # here, so the pickler's dispatch table names its type from now on.
            if kind not in _host_arrays.judged:
                _host_arrays.notice(kind)
            break
    else:
        return found
    return OTHER_BIG_BYTES if found == BIG_BYTES else OTHER
