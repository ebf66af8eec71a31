"""Fixtures shared by the whole suite (keep this file small)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from wiresens.shm import unlink

pytest_plugins = ["wiresens.testing.services"]

_counter = itertools.count()


@pytest.fixture
def shm_prefix() -> Iterator[str]:
    """A shared-memory name prefix unique to this test; its segments are unlinked afterwards.

    Tests run beside live nodes and other test sessions, so every segment a test makes is
    named under this prefix and nothing outside it is ever removed.
    """
    prefix = f"wiresens-t{os.getpid()}-{next(_counter)}-"
    yield prefix
    try:
        leftovers = [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]
    except OSError:
        leftovers = []
    for name in leftovers:
        unlink(name)
