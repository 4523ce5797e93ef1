"""Helpers for the scale-out test: a bounded REST load over several gateways that records every
answer, and an SMTP catcher that can hold senders in RCPT TO (to kill a notifier mid-mail)."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.notifier_support import MailCatcher

# One request of the load: given a gateway client, send it; the answer's status is recorded.
Action = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


@dataclass
class Answer:
    kind: str
    gateway: int
    status: int  # 0: no HTTP answer at all (transport error)
    detail: str = ""


@dataclass
class Load:
    """`concurrency` workers sending randomly chosen `actions`, alternating over `gateways`, until
    `stop()` or `count` requests; every answer is kept in `answers`."""

    gateways: list[httpx.AsyncClient]
    actions: dict[str, Action]
    concurrency: int = 8
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._turns: Iterator[int] = itertools.count()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._kinds = list(self.actions)
        self._random = random.Random()

    async def _worker(self, limit: int | None) -> None:
        while not self._stop.is_set():
            turn = next(self._turns)
            if limit is not None and turn >= limit:
                return
            # Random, not in turn: a fixed cycle of kinds phase-locks with round robin's strict
            # alternation (every write of a kind landed on the same one of two replicas).
            kind = self._random.choice(self._kinds)
            gateway = turn % len(self.gateways)
            try:
                response = await self.actions[kind](self.gateways[gateway])
            except httpx.HTTPError as error:
                self.answers.append(Answer(kind, gateway, 0, repr(error)))
                continue
            detail = response.text[:300] if response.status_code >= 400 else ""
            self.answers.append(Answer(kind, gateway, response.status_code, detail))

    def start(self, count: int | None = None) -> Load:
        self._tasks = [asyncio.create_task(self._worker(count)) for _ in range(self.concurrency)]
        return self

    async def wait_answers(self, count: int, timeout_s: float = 60.0) -> None:
        """Until `count` answers in total have come back (the load keeps running)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.answers) < count:
            if all(task.done() for task in self._tasks):
                break
            assert asyncio.get_running_loop().time() < deadline, "the load stalled"
            await asyncio.sleep(0.02)

    async def stop(self) -> list[Answer]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.answers

    async def finish(self) -> list[Answer]:
        """Wait for a bounded load (`start(count=...)`) to send everything."""
        await asyncio.gather(*self._tasks)
        return self.answers

    def statuses(self) -> Counter[int]:
        return Counter(answer.status for answer in self.answers)


@dataclass
class HoldingMailCatcher(MailCatcher):
    """A MailCatcher whose RCPT TO waits between `hold()` and `release()`: senders stop before
    any mail is accepted, so killing one then cannot leave an accepted-but-unrecorded mail."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._released = threading.Event()
        self._released.set()
        self._held = 0

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    @property
    def held(self) -> int:
        with self._lock:
            return self._held

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self._lock:
            self._held += 1
        try:
            if not self._released.is_set():
                await asyncio.to_thread(self._released.wait)
        finally:
            with self._lock:
                self._held -= 1
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)
