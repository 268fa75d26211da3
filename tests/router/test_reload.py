"""Config changes apply without a restart and without dropping requests; the CLI end to end."""

from __future__ import annotations

import asyncio
import signal
import ssl
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from reconciler.cli import main as cli
from tests import helpers
from tests.router import harness
from tests.router.harness import deployment, run, running, score_url, session, write_config

KEY = "r" * 43


async def _until(condition: object, timeout: float = 5.0) -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


def test_a_changed_file_applies_without_dropping_in_flight_requests(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = tmp_path / "router.yaml"
    write_config(path, [deployment("a", [backends[0].url])])

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            pool = router.table.pool("a")
            assert pool is not None
            slow = asyncio.create_task(client.post(score_url(base, "a", "sleep_ms=700")))
            await _until(lambda: pool.in_flight == 1)
            kept = pool.backends[0]

            write_config(
                path,
                [
                    deployment("a", [backends[0].url, backends[1].url], max_queue_wait_ms=900),
                    deployment("b", [backends[2].url]),
                ],
            )
            await _until(lambda: "b" in router.table.deployments)
            async with client.post(score_url(base, "b")) as response:
                assert response.status == 200
                assert (await response.json())["backend"] == "b2"
            # The kept backend is the same object, still counting the request in flight.
            assert router.table.pool("a") is pool
            assert pool.backends[0] is kept and kept.in_flight == 1
            response = await slow
            assert response.status == 200
            assert (await response.json())["backend"] == "b0"
            assert kept.in_flight == 0

            # A broken file is refused; the last good config stays in force.
            path.write_text("listen: [\n")
            await asyncio.sleep(0.2)
            assert set(router.table.deployments) == {"a", "b"}

            write_config(path, [deployment("a", [backends[1].url])])
            await _until(lambda: "b" not in router.table.deployments)
            async with client.post(score_url(base, "b")) as response:
                assert response.status == 404
            assert not kept.in_pool
            assert [b.url for b in pool.backends] == [backends[1].url]
            assert pool.in_flight == 0

    run(scenario())


def _localhost_tls(folder: Path) -> tuple[bytes, dict[str, str]]:
    """A fresh self-signed certificate for localhost as `folder`'s cert.pem and key.pem: the
    certificate's PEM and the router config's `tls` for the two files."""
    cert, key = helpers.self_signed_pem("localhost")
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    return cert, {"cert": str(folder / "cert.pem"), "key": str(folder / "key.pem")}


def test_serve_command_https_key_files_reload_and_sigterm(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    cert, tls = _localhost_tls(tmp_path)
    (tmp_path / "primary").write_text(KEY)
    path = tmp_path / "router.yaml"
    entry = deployment("a", [backends[0].url], auth={"mode": "key", "key_files": ["primary"]})
    write_config(path, [entry], tls=tls)
    with harness.serving(path, "--reload-interval", "0.05") as served:
        trust = ssl.create_default_context(cadata=cert.decode())
        base = f"https://localhost:{served.port}"

        async def scenario() -> None:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as client:
                headers = {"Authorization": f"Bearer {KEY}"}
                async with client.post(score_url(base, "a"), headers=headers) as response:
                    assert response.status == 200
                async with client.post(score_url(base, "a")) as response:
                    assert response.status == 401
                write_config(path, [entry, deployment("b", [backends[1].url])], tls=tls)
                for _ in range(200):
                    async with client.post(score_url(base, "b")) as response:
                        if response.status == 200:
                            break
                    await asyncio.sleep(0.02)
                assert response.status == 200

        run(scenario())
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0


def test_serve_command_rejects_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("listen: nowhere\n")
    result = CliRunner().invoke(cli.main, ["router", "serve", "--config", str(path)])
    assert result.exit_code == 1
    assert f"{path}:1: listen:" in result.output


def test_a_renewed_certificate_is_served_without_a_restart(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    first_cert, tls = _localhost_tls(tmp_path)
    path = write_config(tmp_path / "router.yaml", [deployment("a", [backends[0].url])], tls=tls)

    async def served_certificate(port: int) -> bytes:
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=insecure)
        ssl_object = writer.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert(binary_form=True)
        writer.close()
        return bytes(certificate)

    def der(pem: bytes) -> bytes:
        return ssl.PEM_cert_to_DER_cert(pem.decode())

    async def scenario() -> None:
        async with running(path) as (router, _):
            assert await served_certificate(router.port) == der(first_cert)
            second_cert, second_key = helpers.self_signed_pem("localhost")
            (tmp_path / "key.pem").write_bytes(second_key)
            (tmp_path / "cert.pem").write_bytes(second_cert)
            for _ in range(200):
                if await served_certificate(router.port) == der(second_cert):
                    break
                await asyncio.sleep(0.02)
            assert await served_certificate(router.port) == der(second_cert)

    run(scenario())
