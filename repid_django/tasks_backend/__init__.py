"""Django's ``django.tasks`` on the engine: the backend (``backend``), the shared payload
vocabulary (``payload``), the actors that run tasks (``worker``) and result reading (``results``).
"""

from .backend import RepidTaskBackend

__all__ = ["RepidTaskBackend"]
