"""A tiny model backend for the router tests, run as its own process (a real server socket).

`python backend.py --name NAME [--port P] [--host H] [--log FILE] [--hold-ms MS]` prints
`PORT <n>` once listening (on 127.0.0.1 unless told: the in-cluster test needs an address an
EndpointSlice may hold).

Executions are counted where a kill cannot lose them: with `--log`, every POST /score appends
`start ID` when its handler begins and `end ID` just before it answers (ID: the request's
X-Request-Id), each line one write(2) to a file opened O_APPEND, so the lines are in the kernel
even if the process is SIGKILLed a moment later. `--hold-ms` makes every request take at least
that long (a slow replica); `drop=1` reads the request, runs it and closes the connection
without answering (a replica dying mid-request).
POST /score reads the body and answers JSON saying which backend served it and what it
received. Query options shape the answer: `sleep_ms` (answer late), `size` (a body of that many
bytes), `stream=1` (send that body in 64 KiB chunks), `chunk_sleep_ms` (the pause between
chunks) and `status` (answer with that status instead, e.g. the model's own 500). GET / answers
200; GET /stats says how many requests it served and the most it had at once.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os

from aiohttp import web


def make_app(name: str, log_path: str | None = None, hold_ms: int = 0) -> web.Application:
    stats = {"count": 0, "in_flight": 0, "max_in_flight": 0}
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT) if log_path else None

    def record(event: str, request: web.Request) -> None:
        if log_fd is not None:
            os.write(log_fd, f"{event} {request.headers.get('X-Request-Id', '-')}\n".encode())

    async def score(request: web.Request) -> web.StreamResponse:
        stats["count"] += 1
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        record("start", request)
        try:
            digest = hashlib.sha256()
            size = 0
            async for chunk in request.content.iter_any():
                digest.update(chunk)
                size += len(chunk)
            sleep_ms = max(int(request.query.get("sleep_ms", "0")), hold_ms)
            if sleep_ms:
                await asyncio.sleep(sleep_ms / 1000)
            if request.query.get("drop") == "1":
                assert request.transport is not None
                request.transport.abort()  # ran it, and dies before answering
                raise asyncio.CancelledError()
            record("end", request)
            status = int(request.query.get("status", "200"))
            if status != 200:  # an answer the model chose, e.g. its own 500
                return web.Response(status=status, text="as asked", headers={"X-Backend": name})
            reply_size = int(request.query.get("size", "-1"))
            if reply_size >= 0:
                data = (bytes(range(251)) * (reply_size // 251 + 1))[:reply_size]
                if request.query.get("stream") != "1":
                    return web.Response(body=data, headers={"X-Backend": name})
                response = web.StreamResponse(headers={"X-Backend": name})
                await response.prepare(request)
                pause = int(request.query.get("chunk_sleep_ms", "1")) / 1000
                for start in range(0, reply_size, 65536):
                    await response.write(data[start : start + 65536])
                    await asyncio.sleep(pause)
                await response.write_eof()
                return response
            info = {
                "backend": name,
                "bytes": size,
                "sha256": digest.hexdigest(),
                "path": request.path_qs,
                "authorization": request.headers.get("Authorization"),
                "x_test": request.headers.get("X-Test"),
                "host": request.headers.get("Host"),
            }
            return web.json_response(info, headers={"X-Backend": name})
        finally:
            stats["in_flight"] -= 1

    async def root(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def get_stats(_: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application(client_max_size=1024**3)
    app.router.add_post("/score", score)
    app.router.add_post("/prefix/score", score)
    app.router.add_get("/", root)
    app.router.add_get("/stats", get_stats)
    return app


async def main(name: str, port: int, host: str, log_path: str | None, hold_ms: int) -> None:
    runner = web.AppRunner(make_app(name, log_path, hold_ms), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--log")
    parser.add_argument("--hold-ms", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.name, args.port, args.host, args.log, args.hold_ms))
