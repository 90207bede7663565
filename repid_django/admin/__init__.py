"""The operations console: ModelAdmins (``console``), their POST-only actions and views
(``actions``, ``views``), list filters (``filters``) and how values are shown (``display``);
the periodic schedules (``schedules``, and ``schedule_status``: next and last runs).
"""

from . import console, schedules

__all__ = ["console", "schedules"]
