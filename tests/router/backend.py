"""A tiny model backend for the router tests, run as its own process (a real server socket).

`python backend.py --name NAME [--port P] [--host H]` prints `PORT <n>` once listening (on
127.0.0.1 unless told: the in-cluster test needs an address an EndpointSlice may hold).
POST /score reads the body and answers JSON saying which backend served it and what it
received. Query options shape the answer: `sleep_ms` (answer late), `size` (a body of that many
bytes), `stream=1` (send that body in 64 KiB chunks) and `chunk_sleep_ms` (the pause between
chunks). GET / answers 200; GET /stats says how many requests it served and the most it had at
once.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib

from aiohttp import web


def make_app(name: str) -> web.Application:
    stats = {"count": 0, "in_flight": 0, "max_in_flight": 0}

    async def score(request: web.Request) -> web.StreamResponse:
        stats["count"] += 1
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            digest = hashlib.sha256()
            size = 0
            async for chunk in request.content.iter_any():
                digest.update(chunk)
                size += len(chunk)
            sleep_ms = int(request.query.get("sleep_ms", "0"))
            if sleep_ms:
                await asyncio.sleep(sleep_ms / 1000)
            reply_size = int(request.query.get("size", "-1"))
            if reply_size >= 0:
                data = bytes(i % 251 for i in range(reply_size))
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


async def main(name: str, port: int, host: str) -> None:
    runner = web.AppRunner(make_app(name), access_log=None)
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
    args = parser.parse_args()
    asyncio.run(main(args.name, args.port, args.host))
