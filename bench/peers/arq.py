"""arq adapter: default Worker (max_jobs=10, poll_delay=0.5 s, results kept 1 h).

No bulk enqueue API.
"""

from __future__ import annotations

from typing import Any

from _common import COUNTER, alatency_loop, atimed_loop, parse_args, run
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker


async def noop(ctx: dict[str, Any], x: int) -> None:
    COUNTER.hit()


async def main() -> None:
    args = parse_args()
    settings = RedisSettings.from_dsn(args.redis)
    if args.mode == "work":
        worker = Worker(
            functions=[noop],  # type: ignore[list-item]
            redis_settings=settings,
            max_jobs=args.concurrency or 10,
            handle_signals=True,
        )
        await worker.async_run()
        return
    pool = await create_pool(settings)

    async def one(i: int) -> None:
        await pool.enqueue_job("noop", i)

    if args.mode == "enqueue":
        await atimed_loop(args.n, one)
    elif args.mode == "latency":
        await alatency_loop(args.n, one)
    else:
        raise SystemExit("arq has no bulk enqueue API")
    await pool.aclose()


if __name__ == "__main__":
    run(main)
