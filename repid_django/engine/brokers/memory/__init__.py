"""The in-memory broker: the full broker contract in one process, for tests and examples
(``broker``; its listing and dead-letter operations in ``admin``), over plain data structures
(``state``).
"""

from .broker import InMemoryMessageBroker

__all__ = ["InMemoryMessageBroker"]
