"""The floor the relay is measured against: a bare ASGI endpoint on the same server.

It reads a request body (a 4 KiB cell in the benchmark), keeps nothing, and
answers 201 with a JSON body the size of a deposit receipt. Served by uvicorn
with the same loop and HTTP parser as the relay, so the difference is the
relay's own work: routing, checks, metrics and the durable store.
"""

from __future__ import annotations

from typing import Any

_BODY = b'{"cell_id":"' + b"0" * 64 + b'","created":true}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 201, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
