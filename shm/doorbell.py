"""Doorbells: a POSIX semaphore a blocked consumer sleeps on and producers ring.

One doorbell belongs to one consumer process and may serve every ring it reads,
so an actor that drains several rings can sleep on one semaphore. The
doorbell's id (creator pid << 32 | 32 random bits) is stored in each ring's
consumer line; a producer that finds the ring's *waiting* word set opens the
semaphore by that id (once, then cached) and posts it. The pid in the id lets
``wiresens shm rm`` find doorbells leaked by killed consumers.

The handshake (consumer: set waiting, re-check, sleep; producer: publish,
check waiting, post) is a store-then-load on each side, which x86-64 TSO may
reorder through the store buffer. A wake-up can therefore be missed; the
consumer's sleep is always bounded by a timeout (default 1 ms), which caps the
cost of that rare race at one timeout. docs/shm.md gives the argument.
"""

from __future__ import annotations

import contextlib
import os
import secrets

import posix_ipc

from .process import process_alive

__all__ = [
    "BellRinger",
    "Doorbell",
    "doorbell_name",
    "doorbell_pid",
    "remove_doorbell",
    "remove_doorbells_of",
    "stale_doorbells",
]


SEM_PREFIX = "sem.wiresens.bell."
"""How Linux names a doorbell in /dev/shm."""


def doorbell_name(bell_id: int) -> str:
    return f"/wiresens.bell.{bell_id:x}"


def doorbell_pid(bell_id: int) -> int:
    """The pid of the process that created the doorbell (ids carry it in their high bits)."""
    return bell_id >> 32


def _doorbell_ids() -> list[int]:
    """Ids of every doorbell in /dev/shm."""
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return []
    out: list[int] = []
    for n in names:
        if n.startswith(SEM_PREFIX):
            with contextlib.suppress(ValueError):
                out.append(int(n[len(SEM_PREFIX) :], 16))
    return out


def stale_doorbells() -> list[int]:
    """Ids of doorbells in /dev/shm whose creating process is gone.

    A consumer killed while blocking cannot unlink its doorbell; ``wiresens shm rm``
    removes these with :func:`remove_doorbell`.
    """
    return sorted(b for b in _doorbell_ids() if not process_alive(doorbell_pid(b), 0))


def remove_doorbells_of(pid: int) -> int:
    """Unlink the doorbells a dead process created; returns how many.

    A supervisor calls it when it reaps a child: a consumer SIGKILLed while blocking
    leaves its doorbell behind, and every restart would leave one more.
    """
    return sum(1 for b in _doorbell_ids() if doorbell_pid(b) == pid and remove_doorbell(b))


def remove_doorbell(bell_id: int) -> bool:
    """Unlink a doorbell by id; False if it did not exist."""
    try:
        posix_ipc.unlink_semaphore(doorbell_name(bell_id))
    except posix_ipc.ExistentialError:
        return False
    return True


class Doorbell:
    """A consumer's doorbell. Create it in the consumer; producers use :meth:`open`."""

    def __init__(self, bell_id: int, sem: posix_ipc.Semaphore, owner: bool) -> None:
        self.id = bell_id
        self._sem = sem
        self._owner = owner

    @classmethod
    def create(cls) -> Doorbell:
        # pid in the high bits (pid_max <= 2**22) so a leaked doorbell names its dead owner.
        bell_id = (os.getpid() << 32) | (secrets.randbits(32) or 1)
        sem = posix_ipc.Semaphore(
            doorbell_name(bell_id), posix_ipc.O_CREX, mode=0o600, initial_value=0
        )
        return cls(bell_id, sem, owner=True)

    @classmethod
    def open(cls, bell_id: int) -> Doorbell | None:
        """Open another process's doorbell; None if it no longer exists."""
        try:
            sem = posix_ipc.Semaphore(doorbell_name(bell_id))
        except posix_ipc.ExistentialError:
            return None
        return cls(bell_id, sem, owner=False)

    def ring(self) -> None:
        # Never let the count run away: one pending post is enough to wake the sleeper.
        if self._sem.value < 2:
            self._sem.release()

    def wait(self, timeout: float) -> bool:
        """Sleep until rung or ``timeout`` seconds pass; True if rung."""
        try:
            self._sem.acquire(timeout)
        except (posix_ipc.BusyError, posix_ipc.SignalError):
            # A signal (SIGTERM to stop the actor) ends the sleep early: the loop checks it.
            return False
        return True

    def close(self) -> None:
        # Unlink by name, before closing: a closed posix_ipc.Semaphore refuses unlink(),
        # which would leave /dev/shm/sem.wiresens.bell.* behind for every sleeper.
        if self._owner:
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_semaphore(doorbell_name(self.id))
            self._owner = False
        with contextlib.suppress(posix_ipc.ExistentialError):
            self._sem.close()

    def __repr__(self) -> str:
        return f"Doorbell(id={self.id:#x}, owner={self._owner}, pid={os.getpid()})"


class BellRinger:
    """A producer's side of the handshake: clear the consumer's waiting word and post
    the doorbell whose id the consumer stored (opened once, reopened if it changes)."""

    __slots__ = ("_bell",)

    def __init__(self) -> None:
        self._bell: Doorbell | None = None

    def ring(self, words: memoryview, waiting_word: int, doorbell_word: int) -> None:
        words[waiting_word] = 0
        bell_id = words[doorbell_word]
        if self._bell is None or self._bell.id != bell_id:
            if self._bell is not None:
                self._bell.close()
            self._bell = Doorbell.open(bell_id) if bell_id else None
        if self._bell is not None:
            self._bell.ring()

    def close(self) -> None:
        if self._bell is not None:
            self._bell.close()
            self._bell = None
