"""Fixtures of the contract tests: every test runs against both shapes of fiscus.

- `dev`: `fiscus dev`, the four services in one process on SQLite and an in-process cache;
- `cluster`: `fiscus-tokens` and `fiscus-receipts` as separate processes on Postgres and Redis,
  each in Postgres schemas and under a Redis key prefix of this run's own, removed at the end.

Binaries come from $FISCUS_BIN_DIR (default: <repo>/target/debug). DATABASE_URL and REDIS_URL
point at Postgres and Redis as for the Rust end-to-end tests.
"""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import harness
from harness import Client, Server

DATABASE_URL = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/test"
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379"


@dataclass
class Backend:
    """One running shape of fiscus, seen through reflection."""

    name: str
    # The client of the receipt service (authenticated).
    receipts: Client
    # Every process started, with the fiscus services it must list through reflection.
    processes: list[tuple[Server, list[str]]] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)

    def __str__(self) -> str:
        return self.name


def _config(directory: Path, text: str) -> Path:
    path = directory / "fiscus.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _start_dev(directory: Path) -> Backend:
    config = _config(directory, harness.DEV_CONFIG)
    server, token = harness.start_dev(directory / "data", config, directory / "fiscus-dev.log")
    try:
        client = Client(server.addr, token)
    except Exception:
        server.stop()
        raise
    services = ["fiscus.v1.ReceiptService", "fiscus.v1.PaymentService",
                "fiscus.v1.ShiftService", "fiscus.v1.TokenService"]
    return Backend("dev", client, [(server, services)], [client])


class _Leftovers:
    """The Postgres schemas and the Redis key prefix this run made, removed at the end."""

    def __init__(self) -> None:
        self.schemas: list[str] = []
        self.key_prefix = f"contract_{uuid.uuid4().hex}"

    def schema(self, service: str) -> str:
        name = f"contract_{service}_{harness.uuid7_hex()}"
        self.schemas.append(name)
        return name

    def remove(self) -> None:
        errors = []
        if self.schemas:
            try:
                import psycopg
                from psycopg import sql

                with psycopg.connect(DATABASE_URL, autocommit=True, connect_timeout=5) as db:
                    for schema in self.schemas:
                        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                            sql.Identifier(schema)))
            except Exception as error:  # housekeeping: report, never fail the run for it
                errors.append(f"schemas {self.schemas}: {error}")
        try:
            import redis

            cache = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
            keys = list(cache.scan_iter(match=f"{self.key_prefix}*", count=1000))
            for start in range(0, len(keys), 500):
                cache.delete(*keys[start:start + 500])
            cache.close()
        except Exception as error:
            errors.append(f"redis keys {self.key_prefix}*: {error}")
        if errors:
            print("contract tests: could not clean up " + "; ".join(errors))


def _start_cluster(directory: Path, leftovers: _Leftovers) -> Backend:
    config = _config(directory, harness.CONFIG)
    common = {
        "FISCUS_DATABASE__URL": DATABASE_URL,
        "FISCUS_CACHE__URL": REDIS_URL,
        "FISCUS_CACHE__KEY_PREFIX": leftovers.key_prefix,
        "FISCUS_KEYS__MASTER_KEY": secrets.token_hex(32),
    }
    started: list[Server] = []
    clients: list[Client] = []
    try:
        tokens = harness.start_service(
            "tokens", config, directory / "fiscus-tokens.log",
            dict(common, FISCUS_DATABASE__SCHEMA=leftovers.schema("tokens")))
        started.append(tokens)
        receipts = harness.start_service(
            "receipts", config, directory / "fiscus-receipts.log",
            dict(common, FISCUS_DATABASE__SCHEMA=leftovers.schema("receipts"),
                 FISCUS_PEERS__TOKENS=f"http://{tokens.addr}"))
        started.append(receipts)
        issuer = Client(tokens.addr)
        clients.append(issuer)
        token = issuer.call("fiscus.v1.TokenService/IssueServiceToken", {
            "clientId": harness.CLIENT_ID, "clientSecret": harness.CLIENT_SECRET,
        }).access_token
        client = Client(receipts.addr, token)
        clients.append(client)
    except Exception:
        for client in clients:
            client.close()
        for server in reversed(started):
            server.stop()
        raise
    return Backend("cluster", client, [(tokens, ["fiscus.v1.TokenService"]),
                                       (receipts, ["fiscus.v1.ReceiptService"])], clients)


@pytest.fixture(scope="session", params=["dev", "cluster"])
def fiscus(request, tmp_path_factory) -> Backend:
    """A running fiscus, once per backend for the whole session."""
    directory = tmp_path_factory.mktemp(request.param)
    leftovers = _Leftovers()
    try:
        backend = (_start_dev(directory) if request.param == "dev"
                   else _start_cluster(directory, leftovers))
    except Exception:
        leftovers.remove()
        raise
    yield backend
    for client in backend.clients:
        client.close()
    for server, _ in reversed(backend.processes):
        server.stop()
    leftovers.remove()


@pytest.fixture
def till(fiscus) -> dict:
    """A terminal of its own for one test (a fresh pos_no: an empty journal)."""
    return harness.terminal()
