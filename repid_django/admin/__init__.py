"""The operations console: ModelAdmins (``console``), their POST-only actions and views
(``actions``, ``views``), list filters (``filters``) and how values are shown (``display``).
"""

from . import console

__all__ = ["console"]
