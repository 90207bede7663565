"""Every runnable example of ``seeds/repid-jobs-actors-workers.txt``, with only the import changed.

Each example runs as a script would (``__name__ == "__main__"``, its own ``asyncio.run``).
Fragments marked "code above is omitted" run inside the setup of the example they continue.
Examples that run a worker until a signal get a real ``SIGINT`` once the worker handles it.
"""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from typing import Any

import pytest

import repid_django


def run_example(source: str) -> dict[str, Any]:
    """Run ``source`` as a script; returns its globals."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(textwrap.dedent(source), "<seed example>", "exec"), namespace)
    return namespace


def interrupt_when_handled(sig: signal.Signals = signal.SIGINT, timeout: float = 10.0) -> None:
    """Send ``sig`` to this process as soon as someone installed a handler for it."""
    before = signal.getsignal(sig)

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if signal.getsignal(sig) is not before:
                os.kill(os.getpid(), sig)
                return
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()


def test_simple_job() -> None:
    ns = run_example(
        """
        import asyncio
        from repid_django import Connection, InMemoryMessageBroker, Job, Repid
        app = Repid(Connection(InMemoryMessageBroker()))
        async def main() -> None:
            async with app.magic():
                Job(name="my_awesome_job")
        if __name__ == "__main__":
            asyncio.run(main())
        """
    )
    assert isinstance(ns["app"], repid_django.Repid)


SETUP = """
import asyncio
from repid_django import Connection, InMemoryMessageBroker, Job, Repid
app = Repid(Connection(InMemoryMessageBroker()))
async def main() -> None:
    async with app.magic():
{body}
if __name__ == "__main__":
    asyncio.run(main())
"""


def with_setup(body: str) -> str:
    return SETUP.format(body=textwrap.indent(textwrap.dedent(body), " " * 8))


def test_enqueue_into_undeclared_queue_raises_key_error() -> None:
    source = with_setup(
        """
        j = Job(name="my_awesome_job")
        await j.enqueue()  # 💥 KeyError: 'default'
        """
    )
    with pytest.raises(KeyError) as info:
        run_example(source)
    assert str(info.value) == "'default'"


def test_declare_then_enqueue_succeeds() -> None:
    ns = run_example(
        with_setup(
            """
            j = Job(name="my_awesome_job")  # (1)
            await j.queue.declare()
            await j.enqueue()
            # ✅ Success!
            """
        )
    )
    broker = ns["app"].connection.message_broker
    [message] = broker._queues["default"].waiting.values()
    assert message.id


def test_setup_declares_queues() -> None:
    ns = run_example(
        """
        import asyncio
        from repid_django import Connection, InMemoryMessageBroker, Job, Repid
        from repid_django import Queue
        app = Repid(Connection(InMemoryMessageBroker()))
        async def setup() -> None:
            async with app.magic():
                await Queue().declare()  # (1)
                await Queue(name="my_awesome_queue").declare()
        if __name__ == "__main__":
            asyncio.run(setup())
        """
    )
    import asyncio

    queues = asyncio.run(ns["app"].connection.message_broker.list_queues())
    assert queues == ["default", "my_awesome_queue"]


def test_queue_given_as_str_or_queue_becomes_a_queue(capsys: pytest.CaptureFixture[str]) -> None:
    run_example(
        """
        from repid_django import Job, Queue
        my_awesome_job = Job(name="my_awesome_job", queue="non-default-queue")
        another_job = Job(name="another_job", queue=Queue("another-queue"))
        print(type(my_awesome_job.queue))  # repid.Queue
        print(type(another_job.queue))  # repid.Queue
        """
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines == [str(repid_django.Queue)] * 2


def test_job_priority_and_timeout() -> None:
    ns = run_example(
        """
        from datetime import timedelta
        from repid_django import Job, PrioritiesT
        high = Job("awesome_job_with_priority", priority=PrioritiesT.HIGH)
        fast = Job("very_fast_job", timeout=timedelta(seconds=5))
        slow = Job("very_slow_job", timeout=timedelta(hours=2))
        """
    )
    assert ns["high"].priority == repid_django.PrioritiesT.HIGH
    assert ns["fast"].timeout == 5.0
    assert ns["slow"].timeout == 7200.0


def test_actor_decorator_leaves_the_function_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run_example(
        """
        from repid_django import Router
        my_router = Router()
        @my_router.actor
        async def my_awesome_function() -> None:
            print("Hello Repid!")
        """
    )
    import asyncio

    asyncio.run(ns["my_awesome_function"]())
    assert capsys.readouterr().out == "Hello Repid!\n"
    assert ns["my_router"].actors["my_awesome_function"].fn is ns["my_awesome_function"]


def test_actor_name_override() -> None:
    ns = run_example(
        """
        from repid_django import Router
        my_router = Router()
        @my_router.actor(name="another_name")
        async def my_awesome_function() -> None:
            print("Hello Repid!")
        """
    )
    assert list(ns["my_router"].actors) == ["another_name"]


def test_retry_policy_factory_and_callable() -> None:
    ns = run_example(
        """
        from repid_django import Router, default_retry_policy_factory
        my_router = Router()
        @my_router.actor(
            retry_policy=default_retry_policy_factory(
                min_backoff=60,
                max_backoff=86400,
                multiplier=5,
                max_exponent=15,
            )
        )
        async def my_exceptional_function() -> None:
            raise Exception("Some random exception.")
        """
    )
    policy = ns["my_router"].actors["my_exceptional_function"].retry_policy
    delays = [policy(n) for n in range(1, 30)]
    assert delays == sorted(delays)
    assert delays[0] >= 60
    assert delays[-1] <= 86400

    ns = run_example(
        """
        from repid_django import Router
        my_router = Router()
        @my_router.actor(retry_policy=lambda retry_number=1: retry_number * 100)
        async def my_exceptional_function() -> None:
            raise Exception("Some random exception.")
        """
    )
    assert ns["my_router"].actors["my_exceptional_function"].retry_policy(3) == 300


def test_workers_are_routers() -> None:
    ns = run_example(
        """
        import asyncio
        from repid_django import Connection, InMemoryMessageBroker, Job, Repid, Worker
        app = Repid(Connection(InMemoryMessageBroker()))
        async def main() -> None:
            async with app.magic():
                my_worker = Worker()
                @my_worker.actor
                async def my_func() -> None:
                    print("Hello!")
                global worker
                worker = my_worker
        if __name__ == "__main__":
            asyncio.run(main())
        """
    )
    assert list(ns["worker"].actors) == ["my_func"]


def test_include_routers() -> None:
    ns = run_example(
        """
        from repid_django import Router, Worker
        router = Router()
        other_router = Router()
        @router.actor
        async def first() -> None: ...
        @other_router.actor(name="first")
        async def replacement() -> None: ...
        @other_router.actor
        async def second() -> None: ...
        a = Worker(routers=[router, other_router])
        # or
        my_worker = Worker()
        my_worker.include_router(router)
        my_worker.include_router(other_router)
        """
    )
    for worker in (ns["a"], ns["my_worker"]):
        assert sorted(worker.actors) == ["first", "second"]
        assert worker.actors["first"].fn is ns["replacement"]


@pytest.mark.timeout(30)
def test_running_a_worker_until_sigint() -> None:
    interrupt_when_handled()
    run_example(
        """
        import asyncio
        from repid_django import Connection, InMemoryMessageBroker, Repid, Worker
        app = Repid(Connection(InMemoryMessageBroker()))
        async def main() -> None:
            async with app.magic(auto_disconnect=True):
                my_worker = Worker()
                await my_worker.run()
        if __name__ == "__main__":
            asyncio.run(main())
        """
    )
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_worker_shutdown_settings() -> None:
    ns = run_example(
        """
        from signal import SIGQUIT
        from repid_django import Worker
        w = Worker(
            graceful_shutdown_time=100.0,  # seconds
            messages_limit=10_000,
            handle_signals=[SIGQUIT],
        )
        """
    )
    worker = ns["w"]
    assert (worker.graceful_shutdown_time, worker.messages_limit) == (100.0, 10_000)
    assert worker.handle_signals == [signal.SIGQUIT]


@pytest.mark.timeout(30)
def test_runner_counts_actor_runs(capsys: pytest.CaptureFixture[str]) -> None:
    interrupt_when_handled()
    run_example(
        """
        import asyncio
        from repid_django import Connection, InMemoryMessageBroker, Repid, Worker
        app = Repid(Connection(InMemoryMessageBroker()))
        async def main() -> None:
            async with app.magic(auto_disconnect=True):
                my_worker = Worker()
                runner = await my_worker.run()
                print(f"Total actor runs: {runner.processed}")
        if __name__ == "__main__":
            asyncio.run(main())
        """
    )
    assert capsys.readouterr().out == "Total actor runs: 0\n"


RECAP = """
import asyncio
import repid_django as repid
app = repid.Repid(repid.Connection(repid.InMemoryMessageBroker()))
router = repid.Router()
@router.actor
async def awesome_hello() -> None:
    print("Hello from an actor!")
async def producer_side() -> None:
    async with app.magic():
        await repid.Queue().declare()
        await repid.Job("awesome_hello").enqueue()
async def consumer_side() -> None:
    async with app.magic(auto_disconnect=True):
        await repid.Worker(routers=[router], messages_limit=1).run()
async def main() -> None:
    await producer_side()
    await consumer_side()
if __name__ == "__main__":
    asyncio.run(main())
"""


@pytest.mark.timeout(30)
def test_recap(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run_example(RECAP)
    assert capsys.readouterr().out == "Hello from an actor!\n"
    import asyncio

    stats = asyncio.run(ns["app"].connection.message_broker.queue_stats("default"))
    assert (stats.ready, stats.running, stats.dead) == (0, 0, 0)
