"""Visibility masks: ``CUDA_VISIBLE_DEVICES`` and the ROCm equivalents.

A mask is a comma-separated list of device indices or ``GPU-`` UUIDs (a
unique prefix is enough). The devices listed become visible in that order and
are renumbered from 0; an empty value hides every device. As in the CUDA
runtime, the first entry that matches no device (or repeats one) ends the
list: it and everything after it are ignored.

ROCm applies ``ROCR_VISIBLE_DEVICES`` first and then ``HIP_VISIBLE_DEVICES``
(or, when that is unset, ``CUDA_VISIBLE_DEVICES``) to what is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["apply_mask", "mask_tokens", "rocm_masks"]


def mask_tokens(value: str) -> list[str]:
    """The entries of a mask value; ``[]`` for an empty (hide-all) value."""
    if not value.strip():
        return []
    return [token.strip() for token in value.split(",")]


def _match(token: str, candidates: Sequence[int], uuids: Sequence[str | None]) -> int | None:
    if token.isdigit():
        position = int(token)
        return candidates[position] if position < len(candidates) else None
    if token.lower().startswith("gpu-"):
        wanted = token.lower()
        found = [
            index
            for index in candidates
            if index < len(uuids) and (uuids[index] or "").lower().startswith(wanted)
        ]
        return found[0] if len(found) == 1 else None
    return None


def apply_mask(
    name: str,
    value: str | None,
    candidates: Sequence[int],
    uuids: Sequence[str | None] = (),
) -> tuple[list[int], str | None]:
    """Apply the mask ``name=value`` to the visible devices ``candidates``.

    ``candidates`` are physical indices in their current order; an index entry
    ``k`` means ``candidates[k]``. ``uuids[i]`` is the UUID of physical device
    ``i``. Returns the physical indices left visible, in mask order, and a note
    when part of the mask was ignored.
    """
    if value is None:
        return list(candidates), None
    chosen: list[int] = []
    for token in mask_tokens(value):
        index = _match(token, candidates, uuids)
        if index is None or index in chosen:
            why = "repeats a device" if index is not None else "matches no device"
            return chosen, (
                f"{name} entry {token!r} {why}; it and the entries after it are ignored"
            )
        chosen.append(index)
    return chosen, None


def rocm_masks(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The masks a HIP program honours, in the order they apply."""
    masks: list[tuple[str, str]] = []
    if "ROCR_VISIBLE_DEVICES" in env:
        masks.append(("ROCR_VISIBLE_DEVICES", env["ROCR_VISIBLE_DEVICES"]))
    if "HIP_VISIBLE_DEVICES" in env:
        masks.append(("HIP_VISIBLE_DEVICES", env["HIP_VISIBLE_DEVICES"]))
    elif "CUDA_VISIBLE_DEVICES" in env:
        masks.append(("CUDA_VISIBLE_DEVICES", env["CUDA_VISIBLE_DEVICES"]))
    return masks
