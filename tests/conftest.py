import os

import pytest
import redis

from helpers import REDIS_SERVER, RawConnection, start_redis_server
from server import Server


@pytest.fixture(scope="module")
def server():
    srv = Server()
    yield srv
    srv.stop()


@pytest.fixture
def r(server):
    client = server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def raw(server, r):
    """A raw connection to the (flushed) server."""
    conn = RawConnection(server.port)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def oracle_port():
    """The port of a redis-server of the module's own, to compare replies with."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip(f"{REDIS_SERVER} is not installed")
    proc, port = start_redis_server()
    try:
        yield port
    finally:
        proc.kill()                        # our own redis-server, by its PID
        proc.wait(5)


@pytest.fixture(scope="module")
def pair(server, oracle_port):
    """(shardd, redis) raw connections, kept for the module."""
    s, o = RawConnection(server.port), RawConnection(oracle_port)
    yield s, o
    s.close()
    o.close()


@pytest.fixture
def oracle(oracle_port):
    """A client of the (flushed) oracle."""
    client = redis.Redis(host="127.0.0.1", port=oracle_port, socket_timeout=10)
    client.flushall()
    yield client
    client.close()
