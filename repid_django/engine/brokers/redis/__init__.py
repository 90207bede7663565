"""The Redis broker: ``broker`` (queues) with ``produce`` (enqueue), ``consume`` (claim, finish)
and ``admin`` (listings, dead letters, results); ``clients``/``wire`` (connections per loop,
thread and process), ``lease`` (keeper thread), ``scripts`` + ``lua/``, ``codec``, ``keys``, ``url``
"""

from .broker import RedisMessageBroker
from .url import redact_url

__all__ = ["RedisMessageBroker", "redact_url"]
