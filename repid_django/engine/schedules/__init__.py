"""Periodic schedules: :class:`Schedule` (what and when) and the scheduler every worker runs."""

from .spec import CATCH_UP_MAX, MISSED, Missed, Schedule, ScheduleError

__all__ = ["CATCH_UP_MAX", "MISSED", "Missed", "Schedule", "ScheduleError"]
