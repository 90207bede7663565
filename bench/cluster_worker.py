"""One worker process of ``python -m bench.cluster``: repid_django's ``Worker`` on a Redis
Cluster URL, consuming several queues at once, until the harness stops it (SIGTERM).

Started as ``python -P bench/peers/_launch.py bench/cluster_worker.py --url URL --queues
a,b,c`` (the launcher puts ``bench/peers/shared`` on ``sys.path`` for ``_common``), so that it
counts its jobs the way every bench adapter does: a no-op actor per queue calls
``COUNTER.hit()`` (a lock and an int), and a daemon thread publishes the count and the wall
times of the first and last job to the control server (``BENCH_CTL``), never to the cluster
being measured. One actor per queue because an actor belongs to one queue; the worker
consumes the queues of all its actors (claims grouped by slot, one group per primary).
"""

from __future__ import annotations

import argparse

from _common import COUNTER, run  # type: ignore[import-not-found]

from repid_django import Connection, Repid, Router, Worker
from repid_django.engine.brokers.redis.broker import RedisMessageBroker


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="redis+cluster://host:port,host:port,...")
    parser.add_argument("--queues", required=True, help="comma-separated queue names")
    parser.add_argument("--prefix", default="repid", help="the broker's key prefix")
    parser.add_argument("--concurrency", type=int, default=100, help="Worker(concurrency=...)")
    return parser.parse_args()


def build(queues: list[str]) -> Router:
    """A router with the no-op actor ``noop_<queue>`` on each queue."""
    router = Router()
    for queue in queues:

        @router.actor(name=f"noop_{queue}", queue=queue)
        async def noop(x: int) -> None:
            COUNTER.hit()

    return router


async def main() -> None:
    args = parse()
    queues: list[str] = args.queues.split(",")
    router = build(queues)
    app = Repid(Connection(RedisMessageBroker(args.url, prefix=args.prefix)))
    async with app.magic(auto_disconnect=True):
        await Worker(routers=[router], concurrency=args.concurrency).run()


if __name__ == "__main__":
    run(main)
