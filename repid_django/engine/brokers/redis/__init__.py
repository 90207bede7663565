"""The Redis broker: ``broker`` (the MessageBroker), Lua scripts in ``lua/`` run by ``scripts``,
leases (``lease``), wire format (``codec``), key names (``keys``), URLs (``url``), admin calls.
"""

from .broker import RedisMessageBroker
from .url import redact_url

__all__ = ["RedisMessageBroker", "redact_url"]
