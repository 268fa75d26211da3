"""Fixtures for the router tests: backend processes shared by a session or owned by one test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.router import harness


@pytest.fixture(scope="session")
def backends() -> Iterator[list[harness.BackendProcess]]:
    """Three long-lived backends shared by the tests that do not kill any."""
    started = [harness.start_backend(f"b{i}") for i in range(3)]
    yield started
    for backend in started:
        backend.stop()


@pytest.fixture
def spawn() -> Iterator[Callable[..., harness.BackendProcess]]:
    """Start backends owned by one test (so it may kill them); all are stopped at its end."""
    owned: list[harness.BackendProcess] = []

    def _spawn(name: str, port: int = 0, *options: str) -> harness.BackendProcess:
        backend = harness.start_backend(name, port, "127.0.0.1", *options)
        owned.append(backend)
        return backend

    yield _spawn
    for backend in owned:
        backend.stop()
