"""argon2id hashing, run in worker threads so a login never blocks the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from libs.concurrency_limit import Bulkhead
from libs.settings import Settings


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        # Verified against when the email is unknown, so both failures take the same time.
        self._dummy_hash = self._hasher.hash("not-a-real-password")
        # argon2 is CPU- and memory-bound: a bounded queue in front of it, so a burst of logins
        # is refused at once (Overloaded, 503) instead of waiting behind each other.
        self.queue = Bulkhead(settings.password_hash_concurrency, settings.password_hash_queue)

    async def hash(self, password: str) -> str:
        async with self.queue.slot():
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        async with self.queue.slot():
            matches = await asyncio.to_thread(
                self._verify, password_hash or self._dummy_hash, password
            )
        return matches and password_hash is not None

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
