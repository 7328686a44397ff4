"""Baseline for the ingest benchmark: an aiohttp endpoint that reads the body and answers 200.

``python bare_app.py PORT [PROCESSES]``: as many processes as the service gets, on one port.
"""

from __future__ import annotations

import os
import sys

from aiohttp import web


async def receive(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({})


def serve(port: int) -> None:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app.router.add_post("/webhooks/vapi", receive)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, reuse_port=True)


def main() -> None:
    port, processes = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for _ in range(processes - 1):
        if os.fork() == 0:
            serve(port)
            os._exit(0)
    serve(port)


if __name__ == "__main__":
    main()
