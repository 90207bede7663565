"""The ORM mirror: a worker listener (``listener``) that writes job, queue, dead-letter and
worker rows in batches off the hot path, with portable bulk upserts (``upsert``).
"""

from .listener import OrmMirror

__all__ = ["OrmMirror"]
