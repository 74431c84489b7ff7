"""Device names out of PyTorch and JAX messages: mismatched and unavailable devices.

Part of :func:`snakepit.errors._parse.parse_context`. Every pattern matches a
message format those libraries really produce (the corpus in
``tests/errors/corpus/`` raises them).
"""

from __future__ import annotations

import re

__all__ = ["parse_devices", "parse_unavailable"]

_DEVICE = r"([a-z]+(?::\d+)?)"
_DEVICE_PAIRS: list[re.Pattern[str]] = [
    # torch: "Expected all tensors to be on the same device, but found at least two
    # devices, cuda:0 and cpu! (when checking argument for argument mat2 in method ...)"
    re.compile(r"found at least two devices, " + _DEVICE + r" and " + _DEVICE),
    # torch >= 2.6: "... but got mat2 is on cpu, different from other tensors on cuda:0"
    re.compile(r"is on " + _DEVICE + r", different from other tensors on " + _DEVICE),
    # torch (TensorIterator): "Tensor on device cpu is not on the expected device meta!"
    re.compile(r"Tensor on device " + _DEVICE + r" is not on the expected device " + _DEVICE),
    # torch (MPS): "Expected all tensors to be on the same device. Found: cpu, mps:0"
    re.compile(r"same device\. Found: " + _DEVICE + r", " + _DEVICE),
]
# torch < 1.9: "... to have the same device as tensor for argument #2 'weight'; but
# device 1 does not equal 0"
_DEVICE_INDICES = re.compile(r"same device as tensor .*?but device (\d+) does not equal (\d+)")
# torch: "Input type (torch.cuda.FloatTensor) and weight type (torch.FloatTensor)
# should be the same"
_TENSOR_TYPE_DEVICES = re.compile(
    r"Input type \(([\w.:]+)\) and (?:weight|bias) type \(([\w.:]+)\) should be the same"
)

# (pattern, device) for "the device does not exist / cannot be used here"
_DEVICE_UNAVAILABLE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Torch not compiled with CUDA enabled"), "cuda"),
    (re.compile(r"Torch not compiled with (XPU|MPS|HPU) enabled"), ""),
    # torch built without a backend: "Could not run 'aten::empty.memory_format' with
    # arguments from the 'MPS' backend" (creating a tensor there fails)
    (re.compile(r"Could not run 'aten::empty[\w.]*' with arguments from the '(\w+)' backend"), ""),
    (re.compile(r"No CUDA GPUs are available"), "cuda"),
    (re.compile(r"Found no NVIDIA driver on your system"), "cuda"),
    (re.compile(r"no CUDA-capable device is detected"), "cuda"),
    (re.compile(r"CUDA driver initialization failed"), "cuda"),
    (re.compile(r"invalid device ordinal"), "cuda"),
    (re.compile(r"MPS backend is not available|MPS backend is supported on MacOS"), "mps"),
    # torch.load: "Attempting to deserialize object on a CUDA device but
    # torch.cuda.is_available() is False"
    (re.compile(r"deserialize object on (?:a |an )?CUDA device"), "cuda"),
    # JAX: "Unknown backend: 'gpu' requested, but no platforms that are instances of
    # gpu are present." / "Backend 'gpu' failed to initialize"
    (re.compile(r"Unknown backend:? '?(\w+)'? requested"), ""),
    (re.compile(r"Backend '(\w+)' failed to initialize"), ""),
]
_DEVICE_IN_TEXT = re.compile(r"\b(cuda:\d+)\b")


def _tensor_type_device(type_name: str) -> str:
    return "cuda" if ".cuda." in type_name or type_name.startswith("cuda") else "cpu"


def parse_devices(message: str) -> list[str] | None:
    for pattern in _DEVICE_PAIRS:
        m = pattern.search(message)
        if m:
            return [m.group(1), m.group(2)]
    m = _DEVICE_INDICES.search(message)
    if m:
        return [f"cuda:{m.group(1)}", f"cuda:{m.group(2)}"]
    m = _TENSOR_TYPE_DEVICES.search(message)
    if m:
        first, second = _tensor_type_device(m.group(1)), _tensor_type_device(m.group(2))
        if first != second:
            return [first, second]
    return None


def parse_unavailable(message: str) -> str | None:
    for pattern, device in _DEVICE_UNAVAILABLE:
        m = pattern.search(message)
        if m:
            if not device:
                return m.group(1).lower()
            named = _DEVICE_IN_TEXT.search(message)
            return named.group(1) if named and device == "cuda" else device
    return None
