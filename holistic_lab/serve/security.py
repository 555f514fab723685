"""What a client may not do: reach the job and model endpoints without the token (when one is
set) or from another site's page in a browser (a loopback server has no token, so any page the
user visits could otherwise POST jobs to it), or name a path outside the workspace."""
from __future__ import annotations

import hmac
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Request

from .errors import ApiError


def foreign_origin(headers) -> str | None:
    """The `Origin` a browser sent when it is not this server's own (scheme-less host:port compare
    with `Host`); None for the page itself and for clients that send no Origin (curl, httpx)."""
    origin = headers.get("origin")
    if origin is None:
        return None
    if origin == "null" or urlsplit(origin).netloc.lower() != (headers.get("host") or "").lower():
        return origin
    return None


def require_token(request: Request) -> None:
    """FastAPI dependency of the job and model endpoints: a browser request from another origin is
    403; with a token configured, `Authorization: Bearer <token>` (or `X-API-Token`) must match it,
    401 otherwise (compared in constant time)."""
    origin = foreign_origin(request.headers)
    if origin is not None:
        raise ApiError(403, "cross_origin", f"requests from another site's page ({origin[:200]}) are refused; "
                       "use the server's own page or a non-browser client")
    token = request.app.state.settings.token
    if not token:
        return
    given = request.headers.get("x-api-token") or ""
    auth = request.headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    # header values arrive decoded as latin-1: back to the bytes sent, which a client such as curl
    # sends as UTF-8, the encoding the token is compared in
    if not hmac.compare_digest(given.encode("latin-1", "replace"), token.encode()):
        raise ApiError(401, "unauthorized", "this endpoint needs the server's API token: "
                       "'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})


def inside_workspace(workspace: Path, value: str, field: str) -> Path:
    """`value` (relative to the workspace, or absolute) resolved after symbolic links; ApiError 400
    naming `field` when it lands outside the workspace."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ApiError(400, "bad_path", f"{field}: expected a path inside the workspace, got {value!r}")
    root = Path(workspace).resolve()
    try:
        path = (root / value).resolve()
    except (OSError, RuntimeError):  # a symbolic link loop
        raise ApiError(400, "bad_path", f"{field}: {value!r} cannot be resolved (a symbolic link loop?)") from None
    if path != root and not path.is_relative_to(root):
        raise ApiError(400, "bad_path", f"{field}: {value!r} resolves outside the server's workspace")
    return path
