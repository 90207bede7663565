"""The worker: the claim-and-run loop (``runner``, ``options``, ``counters``), one message's
processing (``processor``), outcomes and events (``recorder``, ``emitter``, ``events``), executor
pools (``pools``), signals (``signals``) and the event loop it runs on (``loops``).
"""

from .worker import Worker

__all__ = ["Worker"]
