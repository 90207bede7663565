"""repid 2.x adapter: ``RedisServer`` (Redis streams, consumer group) and ``run_worker`` with its
defaults (tasks_limit=1000, batch_size=10, confirmation_mode auto = ack after a successful run,
no result storage).  No bulk enqueue API.
"""

from __future__ import annotations

import signal

from _common import COUNTER, alatency_loop, atimed_loop, parse_args, run
from repid import Repid, Router
from repid.connections import RedisServer

router = Router()


@router.actor(name="noop", channel="default")
async def noop(x: int) -> None:
    COUNTER.hit()


async def main() -> None:
    args = parse_args()
    app = Repid()
    app.include_router(router)
    server = RedisServer(args.redis)
    app.servers.register_server("default", server, is_default=True)
    async with server.connection():
        if args.mode == "work":
            kwargs = {"tasks_limit": args.concurrency} if args.concurrency else {}
            await app.run_worker(register_signals=[signal.SIGTERM], **kwargs)
            return

        async def one(i: int) -> None:
            await app.send_message_json(
                channel="default", payload={"x": i}, headers={"topic": "noop"}
            )

        if args.mode == "enqueue":
            await atimed_loop(args.n, one)
        elif args.mode == "latency":
            await alatency_loop(args.n, one)
        else:
            raise SystemExit("repid 2.x has no bulk enqueue API")


if __name__ == "__main__":
    run(main)
