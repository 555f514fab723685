"""`BodyLimit`: an ASGI middleware that refuses a request body over a limit with 413 JSON before
the app reads it into memory (FastAPI parses a JSON body whole). `/predict` streams its upload
under its own, larger limit and is left to it."""
from __future__ import annotations

import json

JSON_BODY_LIMIT = 1 << 20  # a job config or an activation is a few hundred bytes


class BodyLimit:
    def __init__(self, app, limit: int = JSON_BODY_LIMIT, exempt: tuple[str, ...] = ("/predict",)):
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.exempt:
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted_receive, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": f"the request body is over this endpoint's limit of {self.limit} bytes",
                           "code": "body_too_large"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
