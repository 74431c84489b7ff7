"""Whether ``/dev/shm`` gives snakepit's regions transparent huge pages.

A tmpfs mount's ``huge=`` option (``never`` unless set) decides whether its
files get 2 MiB pages; ``/sys/kernel/mm/transparent_hugepage/shmem_enabled``
can turn them on or off for every mount (``force``, ``deny``). A region is
reserved with ``posix_fallocate`` before it is mapped, so only ``always``
and ``within_size`` reach it (under ``advise`` the pages exist before any
mapping could ask for huge ones). Where they do, a worker's pass over a
shared array runs as fast as over memory of its own; with 4 KiB pages it
can take about twice as long on a VM (docs/zero-copy.md, "Huge pages").
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["GIVES_HUGE_PAGES", "mount_huge_option", "shm_huge_pages"]

SHM_DIR = "/dev/shm"
#: Policies under which a region's pages are huge.
GIVES_HUGE_PAGES = frozenset({"always", "within_size", "force"})
_MOUNTINFO = Path("/proc/self/mountinfo")
_SHMEM_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/shmem_enabled")


def mount_huge_option(mountinfo: str, mount_point: str = SHM_DIR) -> str | None:
    """The ``huge=`` option of the topmost mount at ``mount_point``, in the
    text of ``/proc/<pid>/mountinfo``: ``"never"`` when it has none,
    ``"not tmpfs"`` for another filesystem, None when nothing is mounted there.

    Later lines are mounted over earlier ones: the last match is the one in use.
    """
    found: str | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 7 or fields[4] != mount_point or "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        fstype = fields[separator + 1] if len(fields) > separator + 1 else ""
        if fstype != "tmpfs":
            found = "not tmpfs"
            continue
        options = fields[separator + 3].split(",") if len(fields) > separator + 3 else []
        found = next((o.split("=", 1)[1] for o in options if o.startswith("huge=")), "never")
    return found


def _forced(shmem_enabled: str) -> str | None:
    """``deny`` or ``force`` when ``shmem_enabled`` overrides every mount, else None."""
    chosen = next((word[1:-1] for word in shmem_enabled.split() if word.startswith("[")), None)
    return chosen if chosen in ("deny", "force") else None


def shm_huge_pages() -> str:
    """The huge-page policy that applies to snakepit's regions here:
    ``never``, ``always``, ``within_size``, ``advise``, ``deny``, ``force``,
    ``not tmpfs``, or ``unknown`` (no ``/proc``, nothing at ``/dev/shm``)."""
    try:
        option = mount_huge_option(_MOUNTINFO.read_text())
    except OSError:
        return "unknown"
    if option is None:
        return "unknown"
    try:
        forced = _forced(_SHMEM_ENABLED.read_text())
    except OSError:
        forced = None
    return forced or option
