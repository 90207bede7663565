"""Django's ``django.tasks`` on the engine: the backend (``backend``), the shared payload
vocabulary and known tasks (``payload``), the actors that run tasks (``worker``), what
``runworker`` adds for them (``routing``) and result reading (``results``).
"""

from .backend import RepidTaskBackend

__all__ = ["RepidTaskBackend"]
