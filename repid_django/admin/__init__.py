"""The operations console: ModelAdmins (``console``, and ``queues``: pause and resume, purge),
their POST-only actions and views (``actions``, ``views``), list filters (``filters``), how
values are shown (``display``) and counted at any table size (``paginator``, ``counts``);
the periodic schedules (``schedules``, and ``schedule_status``: next and last runs).
"""

from . import console, queues, schedules

__all__ = ["console", "queues", "schedules"]
