"""``manage.py check`` names a misspelt ``REPID_*`` environment variable (W005)."""

from __future__ import annotations

import pytest
from django.core import checks

pytestmark = pytest.mark.django_db


def test_misspelt_environment_variables_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPID_CONCURENCY", "5")
    monkeypatch.setenv("REPID_BROKERURL", "redis://localhost")
    monkeypatch.setenv("REPID_lease_ttl", "5")
    monkeypatch.setenv("REPID_SOMETHING_ELSE", "1")  # no setting is close: not ours to judge
    found = [m for m in checks.run_checks(databases=["default"]) if m.id == "repid_django.W005"]
    assert [(m.msg.split()[2], m.hint) for m in found] == [
        ("REPID_BROKERURL", "Did you mean REPID_BROKER_URL?"),
        ("REPID_CONCURENCY", "Did you mean REPID_CONCURRENCY?"),
        ("REPID_lease_ttl", "Did you mean REPID_LEASE_TTL?"),
    ]
    monkeypatch.delenv("REPID_lease_ttl")
    monkeypatch.delenv("REPID_CONCURENCY")
    monkeypatch.delenv("REPID_BROKERURL")
    assert not [m for m in checks.run_checks(databases=["default"]) if m.id == "repid_django.W005"]
