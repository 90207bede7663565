"""Message brokers: the contract (``base``), the in-memory broker for tests (``memory/``), Redis
for everything else (``redis/``), and the embedded Redis server for a zero-setup start
(``embedded``).
"""

from .base import (
    DeadLetter,
    DeadReason,
    Delivery,
    MessageBroker,
    Outcome,
    OutcomeKind,
    QueueStats,
    ResultBroker,
)
from .memory.broker import InMemoryMessageBroker

__all__ = [
    "DeadLetter",
    "DeadReason",
    "Delivery",
    "InMemoryMessageBroker",
    "MessageBroker",
    "Outcome",
    "OutcomeKind",
    "QueueStats",
    "ResultBroker",
]
