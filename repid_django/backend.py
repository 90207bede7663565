"""The documented ``TASKS`` path: ``"BACKEND": "repid_django.backend.RepidTaskBackend"``.

The backend lives in :mod:`repid_django.tasks_backend`; this module keeps the short path.
"""

from .tasks_backend.backend import RepidTaskBackend

__all__ = ["RepidTaskBackend"]
