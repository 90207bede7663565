"""``rediss://``: enqueue (sync and async) and a worker over TLS, against a real TLS redis-server.

The test makes a throwaway CA and a server certificate for ``localhost`` with the ``openssl``
command; the broker checks the server against that CA (``ssl_ca_certs``) and its host name.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from repid_django import Connection, Job, RedisMessageBroker

from ..redis_server import RedisServer, free_port
from .callers import run_all

pytestmark = pytest.mark.redis


def make_certificates(folder: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("the TLS tests need the openssl command (apt-get install openssl)")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key",
            "-out", "ca.crt", "-subj", "/CN=repid-test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost")  # fmt: skip
    (folder / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf",
    )  # fmt: skip


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, int]]:
    folder = tmp_path_factory.mktemp("tls")
    make_certificates(folder)
    port = free_port()
    extra = ["--tls-port", str(port), "--tls-auth-clients", "no"]
    extra += ["--tls-cert-file", str(folder / "server.crt")]
    extra += ["--tls-key-file", str(folder / "server.key")]
    extra += ["--tls-ca-cert-file", str(folder / "ca.crt")]
    server = RedisServer(extra=extra).start()
    yield server, port
    server.cleanup()


def test_enqueue_and_work_over_tls(tls_server: tuple[RedisServer, int], key_prefix: str) -> None:
    server, port = tls_server
    ca = str(Path(server.extra[server.extra.index("--tls-ca-cert-file") + 1]))
    url = f"rediss://localhost:{port}/0"
    connection = Connection(RedisMessageBroker(url, prefix=key_prefix, ssl_ca_certs=ca))

    async def send() -> str:
        return await Job("mark", args={"token": "async"}, connection=connection).enqueue()

    try:
        Job("mark", args={"token": "sync"}, connection=connection).enqueue()
        asyncio.run(send())
    finally:
        connection.close()
    seen = run_all(url, key_prefix, 2, ssl_ca_certs=ca)
    assert seen == {"sync": 1, "async": 1}


def test_a_server_the_ca_does_not_vouch_for_is_refused_at_once(
    tls_server: tuple[RedisServer, int], key_prefix: str
) -> None:
    _, port = tls_server
    url = f"rediss://localhost:{port}/0"  # checked against the system CAs: not ours
    connection = Connection(RedisMessageBroker(url, prefix=key_prefix, enqueue_timeout=5.0))
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="TLS certificate that was not trusted"):
            Job("mark", connection=connection).enqueue()
        assert time.monotonic() - started < 2.0  # not retried until the deadline
    finally:
        connection.close()
