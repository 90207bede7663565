"""The metrics view: who may read it (``REPID["METRICS_AUTH"]``), what it serves, and its
check; the enqueue counter of several web processes added up (multiprocess mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.db import connection
from django.test import Client

from repid_django import Job, conf
from repid_django.metrics.auth import metrics_auth

from .scrape import delta, parse, value

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.django.metrics_urls")]

TOKEN = "a-test-token-of-some-length"
ROOT = Path(__file__).resolve().parents[2]


def use_auth(settings: Any, auth: Any) -> None:
    settings.REPID = {**settings.REPID, "METRICS_AUTH": auth}


def make_user(django_user_model: Any, name: str, *, staff: bool) -> Any:
    return django_user_model.objects.create_user(name, password="pw", is_staff=staff)


def test_staff_only_by_default(client: Client, django_user_model: Any) -> None:
    anonymous = client.get("/metrics/")
    assert anonymous.status_code == 403
    assert b"REPID['METRICS_AUTH']" in anonymous.content
    client.force_login(make_user(django_user_model, "plain", staff=False))
    assert client.get("/metrics/").status_code == 403
    client.force_login(make_user(django_user_model, "staff", staff=True))
    response = client.get("/metrics/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-cache" in response["Cache-Control"]
    samples, types = parse(response.content.decode())
    assert types["repid_jobs_enqueued"] == "counter"
    assert types["repid_job_run_seconds"] == "histogram"
    assert types["repid_queue_ready"] == "gauge"
    assert value(samples, "repid_broker_up") == 1
    assert client.post("/metrics/").status_code == 405


def test_a_bearer_token(client: Client, settings: Any, django_user_model: Any) -> None:
    use_auth(settings, {"staff": False, "token": TOKEN})
    assert client.get("/metrics/").status_code == 403
    assert client.get("/metrics/", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.get("/metrics/", HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200
    assert client.get("/metrics/", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 403
    assert client.get("/metrics/", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 403
    client.force_login(make_user(django_user_model, "staff", staff=True))
    assert client.get("/metrics/").status_code == 403  # staff turned off


def test_staff_stays_in_when_a_token_is_added(
    client: Client, settings: Any, django_user_model: Any
) -> None:
    use_auth(settings, {"token": TOKEN})
    assert client.get("/metrics/", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    client.force_login(make_user(django_user_model, "staff", staff=True))
    assert client.get("/metrics/").status_code == 200


def test_an_ip_allow_list(client: Client, settings: Any) -> None:
    use_auth(settings, {"staff": False, "ips": ["10.1.0.0/16", "::1"]})
    assert client.get("/metrics/", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics/", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics/", REMOTE_ADDR="10.2.0.1").status_code == 403
    assert client.get("/metrics/", REMOTE_ADDR="not-an-ip").status_code == 403
    # A forwarded header is not trusted: only the address that connected counts.
    forwarded = client.get("/metrics/", REMOTE_ADDR="10.2.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3")
    assert forwarded.status_code == 403


def test_from_the_environment(
    client: Client, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setenv("REPID_METRICS_AUTH", f'{{"staff": false, "token": "{TOKEN}"}}')
    conf.reset()
    assert metrics_auth().token == TOKEN
    assert client.get("/metrics/", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ({"token": "short"}, "at least 16 characters"),
        ({"staff": "yes"}, "not True or False"),
        ({"ips": "10.0.0.0/8"}, "not a list"),
        ({"ips": ["10.0.0.300"]}, "does not appear to be an IPv4 or IPv6"),
        ({"tokens": TOKEN}, "unknown key(s) 'tokens'"),
        ("staff", "is not a non-empty dict"),
    ],
)
def test_a_bad_setting_is_a_check_error(settings: Any, auth: Any, problem: str) -> None:
    use_auth(settings, auth)
    found = [m for m in checks.run_checks(databases=["default"]) if m.id == "repid_django.E002"]
    assert len(found) == 1
    assert problem in found[0].msg
    assert "METRICS_AUTH" in found[0].msg


ENQUEUER = """
import django
django.setup()
from repid_django import Job
for n in range(int(__import__("sys").argv[1])):
    Job("mp_actor", args={"n": n}).enqueue()
"""


@pytest.mark.redis
@pytest.mark.slow
def test_multiprocess_mode_adds_up_every_web_process(
    client: Client,
    settings: Any,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes enqueue under PROMETHEUS_MULTIPROC_DIR; the view (a third process's)
    shows their sum, and not the jobs this process enqueued itself."""
    folder = tmp_path / "prom"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPID_")}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.django.settings",
        REPID_BROKER_URL=redis_url,
        REPID_PREFIX=key_prefix,
        REPID_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        PROMETHEUS_MULTIPROC_DIR=str(folder),
        PYTHONPATH=str(ROOT),
    )
    for count in (3, 4):
        done = subprocess.run(
            [sys.executable, "-c", ENQUEUER, str(count)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert len(list(folder.glob("counter_*.db"))) == 2
    Job("mp_actor", args={"n": 0}).enqueue()  # this process: not in the folder
    use_auth(settings, {"staff": False, "token": TOKEN})
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    response = client.get("/metrics/", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    samples = parse(response.content.decode())[0]
    name = "repid_jobs_enqueued_total"
    assert value(samples, name, actor="mp_actor", queue="default") == 7
    assert value(samples, "repid_broker_up") == 1  # the live gauges come along
    assert delta(samples, {}, "repid_queue_ready", queue="default") == 8
