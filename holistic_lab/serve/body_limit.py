"""`BodyLimit`: an ASGI middleware that refuses a request body over `limit` bytes with a 413 JSON
error, by its Content-Length before a byte is read, or as soon as a chunked body passes it.
FastAPI reads a JSON body in full before any dependency runs (the token check included), so
without it anyone could make the server hold gigabytes sent to /api/v1/model/prune. Paths in
`exempt` bound their own bodies (/predict: `max_upload_bytes`)."""
from __future__ import annotations

from fastapi import HTTPException

from .errors import error_response


class BodyLimit:
    def __init__(self, app, limit: int, exempt: tuple[str, ...] = ()):
        self.app, self.limit, self.exempt = app, limit, exempt
        self.message = f"the request body is over this endpoint's limit of {limit} bytes"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.exempt:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await error_response(413, "body_too_large", self.message)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, self.message)  # answered as JSON by errors.py
            return message

        await self.app(scope, limited_receive, send)
