"""The consuming side of the Redis broker: claim (with BLPOP wake-ups), leases, finish.

See :mod:`.broker` for how claims, leases, last chances and fenced, idempotent finishes work.
These methods run on the worker's event loop; the lease keeper runs in its own thread.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..base import BrokerCounters, Delivery, Outcome, OutcomeKind
from .codec import call_digest, decode_claimed, finish_args, result_ttl_ms, text
from .keys import wake_key
from .lease import Heartbeat, LeaseKeeper
from .scripts import RETRYABLE

if TYPE_CHECKING:
    from .clients import Clients

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
    _unsure_claim: dict[tuple[str, ...], str]
    _claim_memo: dict[tuple[str, ...], str]
    _turn: int
    _unsure_finish: set[str]
    _conc_queues: set[str]
    _beats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Heartbeat]
    _counters: BrokerCounters
    prefix: str

    @property
    def _dead_ttl_ms(self) -> int:
        raise NotImplementedError

    def _base(self, queue: str) -> str:
        raise NotImplementedError

    def _blocking(self) -> Clients:
        raise NotImplementedError

    def _slot_groups(self, queues: list[str]) -> list[list[str]]:
        raise NotImplementedError

    @property
    def is_cluster(self) -> bool:
        raise NotImplementedError

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        raise NotImplementedError

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
        beat = self._heartbeat()
        # One script call per slot group: on a Cluster, the queues whose keys share a slot (a
        # script runs on one node); elsewhere all the queues (strict priority across them).
        groups = self._slot_groups(queue_list)
        deadline = time.monotonic() + max(wait, 0.0)
        interrupts = self._interrupts
        if self._alone_pending:
            # A last-chance job is running here, or one waits for this process to hold
            # nothing: claim nothing more until every held job is finished.
            if not await self._until_idle(wait):
                return []
            self._alone_pending = False
        while True:
            got: list[Delivery] = []
            buried = passed_over = False
            next_run = -1.0
            self._turn = turn = (self._turn + 1) % len(groups)
            for group in groups[turn:] + groups[:turn]:
                reply, good, bad = await self._claim_group(group, limit - len(got), wait, beat)
                got += good
                buried = buried or bool(bad)
                run_at = float(reply[0])
                if run_at >= 0 and (next_run < 0 or run_at < next_run):
                    next_run = run_at
                if int(reply[1]) == 1 or any(self._last_chance(d) for d in good):
                    passed_over = passed_over or int(reply[1]) == 1
                    self._alone_pending = True
                    break  # a last-chance job runs alone: claim nothing more with it
                if len(got) >= limit:
                    break
            if got:
                return got
            if buried and interrupts == self._interrupts:
                continue  # only unreadable ones (now buried): what is behind them may be fine
            remaining = deadline - time.monotonic()
            if remaining <= 0 or interrupts != self._interrupts:
                return []
            if passed_over:  # busy here: let the held jobs finish, then claim it alone
                if not await self._until_idle(remaining):
                    return []
                self._alone_pending = False
                continue
            block = min(remaining, self.reaper_interval)
            if next_run >= 0:
                block = min(block, max(next_run - time.time(), 0.0))
            if block > 0.001:
                await self._wait_for_wake(groups, block)

    async def _claim_group(
        self, queue_list: list[str], limit: int, wait: float, beat: Heartbeat
    ) -> tuple[Any, list[Delivery], list[Outcome]]:
        """One claim script over ``queue_list`` (one slot group): its reply, the deliveries
        leased (now held) and the unreadable ones (now buried)."""
        keeper = self.keeper
        bases = [self._base(q) for q in queue_list]
        group = tuple(bases)
        now = time.time()
        # A claim whose reply was lost (the call failed after it was sent) is asked for again
        # under its own token: the script answers with what that send leased, instead of
        # leasing more and leaving the first batch to expire (see claim.lua).
        unsure = self._unsure_claim.pop(group, None)
        token = unsure or secrets.token_hex(8)
        alone_ok = keeper.held == 0
        args: list[Any] = [now, limit, int(self.lease_ttl * 1000), token, self.max_lost]
        args += [self._dead_ttl_ms, self.dead_letter_max, int(alone_ok)]
        args += [int(unsure is not None), self._claim_memo.get(group, "")]
        reply = await self._retry(
            "claim", self._resent(args, 8, token, bases), max(wait, self.max_backoff)
        )
        self._unsure_claim.pop(group, None)
        good, bad = decode_claimed(reply, queue_list, token, self.max_message_size, now)
        if len(reply) > 4:
            self._claim_memo[group] = token
        else:
            self._claim_memo.pop(group, None)
        if reply[3] or self._conc_queues:
            self._note_limits(queue_list, text(reply[3]))
        if good:
            keeper.hold(good, beat)
        if bad:
            await self._bury(bad)
        return reply, good, bad

    def _note_limits(self, queues: list[str], indexes: str) -> None:
        """Remember which of ``queues`` have a concurrency limit (their finishes wake the
        claimers waiting for a free slot)."""
        limited = {queues[int(i) - 1] for i in indexes.split()}
        self._conc_queues.difference_update(queues)
        self._conc_queues.update(limited)

    async def _bury(self, bad: list[Outcome]) -> None:
        """Dead-letter unreadable deliveries; on failure, leave them for the reaper (the good
        deliveries of the same claim must still reach the runner)."""
        try:
            await self._finish(bad)
        except Exception as exc:
            log.warning(
                "could not dead-letter %d unreadable message(s) now (%s); their leases "
                "expire and they are read again later",
                len(bad),
                exc,
            )
        else:
            self._counters.dead += len(bad)

    def _resent(
        self, args: list[Any], flag: int, token: str, bases: list[str]
    ) -> Callable[[], Awaitable[Any]]:
        """The claim call; after a failed send (it may have leased), later sends and the next
        ``claim()`` ask for that send's answer (``args[flag]``: the repeat flag)."""

        async def send() -> Any:
            try:
                return await self._script("claim", bases, args)
            except RETRYABLE:
                args[flag] = 1
                self._unsure_claim[tuple(bases)] = token
                raise

        return send

    def _heartbeat(self) -> Heartbeat:
        """The running loop's heartbeat (made on its first claim)."""
        loop = asyncio.get_running_loop()
        beat = self._beats.get(loop)
        if beat is None:
            beat = self._beats[loop] = Heartbeat(loop)
        return beat

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

    async def _wait_for_wake(self, groups: list[list[str]], seconds: float) -> None:
        """Block on the queues' wake-up lists until a push, timeout or stop: one BLPOP (on a
        connection of its own) per slot group, since a Cluster refuses one across slots. A
        BLPOP still pending when the wait ends is left running for the next wait to take over
        (a wake-up it takes meanwhile ends that wait at once)."""
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()
        self._waiters.add(stop)
        clients = self._blocking()
        pending = clients.here().pops
        timeout = f"{max(seconds, 0.01):.3f}"

        async def blpop(keys: tuple[str, ...]) -> Any:
            blocking = clients.blocking(keys[0])
            return await blocking.call_keyed(keys[0], "BLPOP", *keys, timeout)

        wanted = [tuple(wake_key(self.prefix, q) for q in group) for group in groups]
        for keys in [keys for keys in pending if keys not in wanted]:
            pending.pop(keys).cancel()  # other queues now (one paused): it would hold the line
        pops = []
        for keys in wanted:
            pop = pending.get(keys)
            if pop is None:
                pop = pending[keys] = loop.create_task(blpop(keys))
                pop.add_done_callback(_retrieved)
            pops.append(pop)
        try:
            # A BLPOP taken over may block past ``seconds``: the wait ends on time regardless.
            await asyncio.wait(
                (*pops, stop), timeout=seconds + 0.05, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            self._waiters.discard(stop)
            stop.cancel()
            for keys, pop in list(pending.items()):
                if pop.done():
                    del pending[keys]
        done = [p for p in pops if p.done() and not p.cancelled()]
        failed = [p.exception() for p in done if p.exception() is not None]
        if failed:
            log.warning(
                "Redis at %s unreachable while waiting for jobs (%s)", self.target, failed[0]
            )
            await asyncio.sleep(min(seconds, self.max_backoff))

    def started(self, delivery: Delivery, timeout: float) -> None:
        self.keeper.started(delivery, timeout)

    def watch_stops(self, callback: Callable[[str, str], None]) -> None:
        self.keeper.watch_stops(callback)

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []
        # The leases stay held (extended) until the outcomes are applied or refused: a finish
        # retried through a Redis outage must not let a completed job's lease expire.
        deliveries = [o.delivery for o in outcomes]
        self.keeper.finishing(deliveries)
        applied = await self._finish_grouped(outcomes)
        self.keeper.release(deliveries)
        if self._idle_waiters and self.keeper.held == 0:
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
        for outcome, ok in zip(outcomes, applied, strict=True):
            if ok:
                if outcome.kind is OutcomeKind.ACK:
                    self._counters.acked += 1
                elif outcome.kind is OutcomeKind.RETRY:
                    self._counters.retried += 1
                elif outcome.kind is OutcomeKind.DEAD:
                    self._counters.dead += 1
        return applied

    async def _finish_grouped(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """:meth:`_finish` per slot group (on a Cluster, each group's script runs on its node;
        the groups' calls go out together)."""
        if not self.is_cluster:
            return await self._finish(outcomes)  # one server: one script over every queue
        queues = list(dict.fromkeys(o.delivery.message.queue for o in outcomes))
        groups = self._slot_groups(queues)
        if len(groups) == 1:
            return await self._finish(outcomes)
        where = {q: i for i, group in enumerate(groups) for q in group}
        parts: list[list[int]] = [[] for _ in groups]
        for index, outcome in enumerate(outcomes):
            parts[where[outcome.delivery.message.queue]].append(index)
        done = await asyncio.gather(*(self._finish([outcomes[i] for i in p]) for p in parts))
        applied = [False] * len(outcomes)
        for part, flags in zip(parts, done, strict=True):
            for index, flag in zip(part, flags, strict=True):
                applied[index] = flag
        return applied

    async def _finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        now = time.time()
        memo_ttl_ms = int(self.finish_memo_ttl * 1000)
        digest = call_digest(outcomes)
        # A call whose earlier send failed after it may have been applied (the caller tries
        # the same outcomes again) asks for the first answer from its first send on.
        repeat = 1 if digest in self._unsure_finish else 0
        head: list[Any] = [now, self._dead_ttl_ms, self.dead_letter_max, digest]
        head += [memo_ttl_ms, repeat, result_ttl_ms(self.result_ttl)]
        queues, args, order = finish_args(
            outcomes, now, self.result_ttl, head, wake=self._conc_queues
        )
        keys = [self._base(q) for q in queues]

        async def send() -> Any:
            try:
                return await self._script("finish", keys, args)
            except RETRYABLE:
                args[5] = 1  # it may have run: the next send asks for the first answer
                if len(self._unsure_finish) < 1000:
                    self._unsure_finish.add(digest)
                raise

        reply = await self._retry("finish", send, self.finish_retry_time)
        self._unsure_finish.discard(digest)
        applied = [False] * len(outcomes)
        # One byte per outcome: b"1" applied, b"0" lease lost (see lua/finish.lua).
        for index, flag in zip(order, bytes(reply), strict=True):
            applied[index] = flag == 49
        return applied


def _retrieved(pop: asyncio.Task[Any]) -> None:
    """A BLPOP that fails while no wait is watching it is seen by the next wait, or by none if
    the loop ends first: its error is marked retrieved either way (asyncio warns otherwise)."""
    if not pop.cancelled():
        pop.exception()
