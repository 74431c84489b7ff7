"""Reading whether /dev/shm gives snakepit's regions huge pages (``snakepit doctor``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from snakepit.zero_copy import _huge

_TMPFS = "25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683772k{extra}"
_OTHER = "22 1 0:21 / /proc rw,nosuid - proc proc rw"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([_TMPFS.format(extra="")], "never"),
        ([_TMPFS.format(extra=",huge=within_size")], "within_size"),
        ([_TMPFS.format(extra=",huge=always,nr_inodes=10")], "always"),
        ([_TMPFS.format(extra=",huge=advise")], "advise"),
        # Mounted over: the last one is in use, either way round.
        ([_TMPFS.format(extra=""), _TMPFS.format(extra=",huge=within_size")], "within_size"),
        ([_TMPFS.format(extra=",huge=within_size"), _TMPFS.format(extra="")], "never"),
        (["30 25 8:1 / /dev/shm rw - ext4 /dev/sda1 rw"], "not tmpfs"),
        ([_OTHER], None),
        (["garbage", "", "1 2 3"], None),
    ],
)
def test_the_topmost_mount_at_dev_shm_decides(lines: list[str], expected: str | None) -> None:
    assert _huge.mount_huge_option("\n".join([_OTHER, *lines])) == expected


@pytest.mark.parametrize(
    ("shmem_enabled", "expected"),
    [
        ("always within_size advise [never] deny force", None),
        ("always within_size advise never [deny] force", "deny"),
        ("always within_size advise never deny [force]", "force"),
        ("[always] within_size advise never deny force", None),
        ("", None),
    ],
)
def test_only_deny_and_force_override_the_mount(shmem_enabled: str, expected: str | None) -> None:
    assert _huge._forced(shmem_enabled) == expected


def test_this_machine_reads_as_one_of_the_known_policies() -> None:
    known = {"never", "always", "within_size", "advise", "deny", "force", "not tmpfs", "unknown"}
    assert _huge.shm_huge_pages() in known


def test_doctor_reports_the_policy_and_advises_when_pages_are_small() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "snakepit", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["shm_huge_pages"] == _huge.shm_huge_pages()
    advice = [w for w in report["warnings"] if "huge=within_size" in w]
    small = report["shm_huge_pages"] not in _huge.GIVES_HUGE_PAGES | {"unknown", "not tmpfs"}
    assert bool(advice) == small
