"""The Django app: configures the engine once and imports every installed app's ``tasks.py``."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RepidConfig(AppConfig):
    name = "repid_django"
    label = "repid_django"
    verbose_name = _("Background jobs")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks (import side effect, the Django idiom).
        from . import checks, conf, connection
        from .worker import discovery

        del checks
        # Schedules without a tz read their cron in the project's TIME_ZONE (also when
        # USE_TZ = False: the zone is still the project's wall clock).
        conf.apply_time_zone()
        # The process's default connection: built now, opened on first use (nothing connects
        # here, so `migrate` or `check` never touch Redis).
        connection.install_if_valid()
        discovery.autodiscover()
        # A deleted schedule's marks go with it (a new one of that name starts afresh).
        from django.db.models.signals import post_delete

        from .models import Schedule
        from .worker.schedules import forget_deleted

        post_delete.connect(forget_deleted, sender=Schedule, dispatch_uid="repid-forget-schedule")
