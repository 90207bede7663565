"""The Redis broker: ``broker`` (queues) with ``produce`` (enqueue), ``consume`` (claim, finish)
and ``admin`` (listings, dead letters, results); ``clients``/``wire`` (connections per loop,
thread and process), ``lease`` (keeper thread), ``scripts`` + ``lua/``, ``codec``, ``keys``,
``url``; ``topology`` (the URL forms), ``cluster`` (routing by slot), ``sentinel`` (finding the
primary).
"""

from .broker import RedisMessageBroker
from .produce import NotReplicatedError
from .url import redact_url

__all__ = ["NotReplicatedError", "RedisMessageBroker", "redact_url"]
