"""The consuming side of the Redis broker: claim (with BLPOP wake-ups), leases, finish.

See :mod:`.broker` for how claims, leases, last chances and fenced, idempotent finishes work.
These methods run on the worker's event loop; the lease keeper runs in its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..base import BrokerCounters, Delivery, Outcome, OutcomeKind
from .codec import call_digest, decode_claimed, finish_args, result_ttl_ms
from .keys import wake_key
from .lease import LeaseKeeper
from .scripts import RETRYABLE

log = logging.getLogger("repid_django.redis")


class RedisConsumerMixin:
    """Claim and finish for :class:`~.broker.RedisMessageBroker` (which provides the rest)."""

    lease_ttl: float
    reaper_interval: float
    max_lost: int
    max_message_size: int
    result_ttl: float
    finish_retry_time: float
    finish_memo_ttl: float
    max_backoff: float
    dead_letter_max: int

    @property
    def target(self) -> str:
        raise NotImplementedError

    @property
    def keeper(self) -> LeaseKeeper:
        raise NotImplementedError

    _interrupts: int
    _waiters: set[asyncio.Future[None]]
    _idle_waiters: set[asyncio.Future[None]]
    _alone_pending: bool
    _counters: BrokerCounters
    prefix: str

    @property
    def _dead_ttl_ms(self) -> int:
        raise NotImplementedError

    def _base(self, queue: str) -> str:
        raise NotImplementedError

    def _blocking_client(self) -> Any:
        raise NotImplementedError

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        raise NotImplementedError

    def _call(self, name: str, keys: list[str], args: list[Any]) -> Callable[[], Awaitable[Any]]:
        return lambda: self._script(name, keys, args)

    async def _retry[T](
        self, what: str, call: Callable[[], Awaitable[T]], give_up: float | None = None
    ) -> T:
        raise NotImplementedError

    async def claim(self, queues: Sequence[str], limit: int, wait: float) -> list[Delivery]:
        queue_list = list(queues)
        if not queue_list or limit <= 0:
            return []
        keeper = self.keeper
        keeper.watch(queue_list)
        bases = [self._base(q) for q in queue_list]
        deadline = time.monotonic() + max(wait, 0.0)
        interrupts = self._interrupts
        if self._alone_pending:
            # A last-chance job is running here, or one waits for this process to hold
            # nothing: claim nothing more until every held job is finished.
            if not await self._until_idle(wait):
                return []
            self._alone_pending = False
        while True:
            now = time.time()
            token = secrets.token_hex(8)
            alone_ok = keeper.held == 0
            args = [now, limit, int(self.lease_ttl * 1000), token, self.max_lost]
            args += [self._dead_ttl_ms, self.dead_letter_max, int(alone_ok)]
            reply = await self._retry(
                "claim", self._call("claim", bases, args), max(wait, self.max_backoff)
            )
            good, bad = decode_claimed(reply, queue_list, token, self.max_message_size, now)
            passed_over = int(reply[1]) == 1
            if passed_over or any(self._last_chance(d) for d in good):
                self._alone_pending = True
            if good:
                keeper.hold((d.message.queue, d.message.id, d.token) for d in good)
            if bad:
                try:
                    await self._finish(bad)
                except Exception as exc:  # the good deliveries must still reach the runner
                    log.warning(
                        "could not dead-letter %d unreadable message(s) now (%s); their leases "
                        "expire and they are read again later",
                        len(bad),
                        exc,
                    )
                else:
                    self._counters.dead += len(bad)
            if good:
                return good
            remaining = deadline - time.monotonic()
            if remaining <= 0 or interrupts != self._interrupts:
                return []
            if bad:
                continue
            if passed_over:  # busy here: let the held jobs finish, then claim it alone
                if not await self._until_idle(remaining):
                    return []
                self._alone_pending = False
                continue
            block = min(remaining, self.reaper_interval)
            next_run = float(reply[0])
            if next_run >= 0:
                block = min(block, max(next_run - time.time(), 0.0))
            if block > 0.001:
                await self._wait_for_wake(queue_list, block)

    def _last_chance(self, delivery: Delivery) -> bool:
        return self.max_lost > 0 and delivery.lost >= self.max_lost

    async def _until_idle(self, seconds: float) -> bool:
        """Wait (at most ``seconds``, or until ``wake_claimers``) until no lease is held here."""
        if self.keeper.held == 0:
            return True
        idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_waiters.add(idle)
        self._waiters.add(idle)
        try:
            await asyncio.wait((idle,), timeout=max(seconds, 0.0))
        finally:
            self._idle_waiters.discard(idle)
            self._waiters.discard(idle)
        return self.keeper.held == 0

    def wake_claimers(self) -> None:
        """Make every waiting ``claim`` of this broker return now (a stopping worker calls it)."""
        self._interrupts += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_for_wake(self, queues: list[str], seconds: float) -> None:
        """Block on the queues' wake-up lists (own connection) until a push, timeout or stop."""
        keys = [wake_key(self.prefix, q) for q in queues]
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()
        self._waiters.add(stop)
        blocking = self._blocking_client()

        async def blpop() -> object:
            return await blocking.call("BLPOP", *keys, f"{max(seconds, 0.01):.3f}")

        pop = loop.create_task(blpop())
        try:
            await asyncio.wait((pop, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiters.discard(stop)
            stop.cancel()
            if not pop.done():
                pop.cancel()
                with contextlib.suppress(asyncio.CancelledError, *RETRYABLE):
                    await pop
        if not pop.cancelled() and isinstance(pop.exception(), RETRYABLE):
            log.warning(
                "Redis at %s unreachable while waiting for jobs (%s)", self.target, pop.exception()
            )
            await asyncio.sleep(min(seconds, self.max_backoff))

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []
        # Stop extending first: a lease the keeper extended while this (fenced) finish was on
        # its way would otherwise be reported as "lost" once the finish had removed it.
        self.keeper.release((o.delivery.message.queue, o.delivery.message.id) for o in outcomes)
        if self._idle_waiters and self.keeper.held == 0:
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
        applied = await self._finish(outcomes)
        for outcome, ok in zip(outcomes, applied, strict=True):
            if ok:
                if outcome.kind is OutcomeKind.ACK:
                    self._counters.acked += 1
                elif outcome.kind is OutcomeKind.RETRY:
                    self._counters.retried += 1
                elif outcome.kind is OutcomeKind.DEAD:
                    self._counters.dead += 1
        return applied

    async def _finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        now = time.time()
        memo_ttl_ms = int(self.finish_memo_ttl * 1000)
        head: list[Any] = [now, self._dead_ttl_ms, self.dead_letter_max, call_digest(outcomes)]
        head += [memo_ttl_ms, 0, result_ttl_ms(self.result_ttl)]
        queues, args, order = finish_args(outcomes, now, self.result_ttl, head)
        keys = [self._base(q) for q in queues]

        async def send() -> Any:
            try:
                return await self._script("finish", keys, args)
            except RETRYABLE:
                args[5] = 1  # it may have run: the next send asks for the first answer
                raise

        reply = await self._retry("finish", send, self.finish_retry_time)
        applied = [False] * len(outcomes)
        # One byte per outcome: b"1" applied, b"0" lease lost (see lua/finish.lua).
        for index, flag in zip(order, bytes(reply), strict=True):
            applied[index] = flag == 49
        return applied
