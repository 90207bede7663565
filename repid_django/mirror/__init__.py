"""The ORM mirror: a worker listener (``listener``) that writes job, queue, dead-letter and
worker rows in batches off the hot path, from events merged into rows (``rows``), with portable
bulk upserts (``upsert``).
"""

from .listener import OrmMirror

__all__ = ["OrmMirror"]
