"""The worker: the loop that claims and runs jobs (``runner``), one message's processing
(``processor``), outcomes and events (``recorder``, ``emitter``, ``events``), pools and signals.
"""

from .worker import Worker

__all__ = ["Worker"]
