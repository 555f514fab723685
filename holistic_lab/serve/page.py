"""The web page at `/` and its live video socket: the static page (no CDN, works offline), the
sample portraits it offers, the skeleton's edges and colours as JSON (from `topology` and `viz`,
so the page and the notebooks draw alike), and `/ws/video`, where a browser streams JPEG frames
and gets each frame's result back, tracked in video mode by a pipeline of its own.

    GET  /                      the page (static/index.html); /static/* its script and style
    GET  /api/v1/samples        [{"name", "url"}] of the sample portraits
    GET  /samples/{name}        one sample portrait (names from SAMPLE_FILES only)
    GET  /api/v1/topology       parts, colour groups, colours and edges of the 543 points
    WS   /ws/video              binary JPEG/PNG frame in -> result JSON (+ server_ms) out;
                                text {"reset": true} starts a new clip; a bad frame -> {"error", "code"}
                                (decoded and refused as POST /predict's uploads are)

The socket keeps at most one frame waiting: a frame that arrives while another waits replaces
it (the reply counts it in `dropped`), so a fast camera never builds a backlog of stale frames.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from pathlib import Path

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ..datasets import SAMPLE_FILES, SAMPLES_DIR, sample_path
from ..topology import EDGE_SETS, NUM_KEYPOINTS, PARTS, edges
from ..viz import PART_COLORS, PART_LABELS, POINT_GROUPS, edge_group
from .decode import decode_upload
from .errors import ApiError
from .payload import result_payload
from .security import foreign_origin

log = logging.getLogger("holistic_lab.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"
# Each socket holds a pipeline of its own (a few hundred MB of interpreters): a bound keeps a
# burst of tabs from exhausting memory.
MAX_VIDEO_CONNECTIONS = 4
# A socket that sends no frame for this long is closed: otherwise a few idle connections would
# hold every slot (and a pipeline each) for ever.
VIDEO_IDLE_TIMEOUT_S = 60.0
# Same origin only: the page loads nothing from elsewhere, so nothing injected can either.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


@functools.lru_cache(maxsize=1)
def topology_json() -> dict:
    """What the page needs to draw as `viz` does: each point's colour group, the colours and
    their labels, and every edge set as [a, b, group] rows (global 543 indices)."""
    return {
        "num_keypoints": NUM_KEYPOINTS,
        "parts": {name: [sl.start, sl.stop] for name, sl in PARTS.items()},
        "point_groups": list(POINT_GROUPS),
        "colors": {group: list(rgb) for group, rgb in PART_COLORS.items()},
        "labels": dict(PART_LABELS),
        "edges": {name: [[a, b, edge_group(a, b)] for a, b in edges(name)] for name in EDGE_SETS},
    }


def available_samples() -> list[str]:
    return [name for name, file_name in SAMPLE_FILES.items() if (SAMPLES_DIR / file_name).is_file()]


class LatestFrame:
    """A one-slot mailbox between the socket's reader and its tracker: `put` replaces a frame
    still waiting (counted in `dropped`); `take` waits for one, or returns None once closed."""

    def __init__(self):
        self._item: bytes | str | None = None
        self._ready = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def put(self, item: bytes | str) -> None:
        if isinstance(self._item, bytes):
            self.dropped += 1
        self._item = item
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self) -> bytes | str | None:
        while self._item is None and not self.closed:
            self._ready.clear()  # nothing runs between the check and the wait: one event loop
            await self._ready.wait()
        item, self._item = self._item, None
        return item


async def _read_frames(websocket: WebSocket, mailbox: LatestFrame) -> None:
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            mailbox.put(message["bytes"] if message.get("bytes") is not None else message.get("text") or "")
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        mailbox.close()


def _track(pipeline, variant: str, data: bytes, settings) -> dict:
    start = time.perf_counter()
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, "too_large", f"the frame is {len(data)} bytes, over this server's limit of "
                       f"{settings.max_upload_bytes}")
    rgb = decode_upload(data, settings.max_pixels)
    result = pipeline.process(rgb)
    payload = result_payload(result, pipeline.last_timings, variant, None)
    payload["server_ms"] = round((time.perf_counter() - start) * 1000, 2)
    return payload


def _control(pipeline, text: str) -> dict:
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        message = None
    if not isinstance(message, dict) or message.get("reset") is not True:
        raise ApiError(400, "bad_message", 'a text message must be {"reset": true}; frames go as binary messages')
    pipeline.reset()
    return {"reset": True}


async def _close_idle(websocket: WebSocket) -> None:
    try:
        await websocket.send_json({"error": f"no frame for {VIDEO_IDLE_TIMEOUT_S:g} s; the stream is closed",
                                   "code": "idle"})
        await websocket.close(code=1000)
    except (WebSocketDisconnect, RuntimeError):
        pass


async def video_socket(websocket: WebSocket) -> None:
    app = websocket.app
    state = app.state
    if foreign_origin(websocket.headers) is not None:  # another site's page must not stream to this server
        await websocket.close(code=1008)
        return
    busy = state.video_connections >= MAX_VIDEO_CONNECTIONS  # counted on the event loop: no lock needed
    if busy:
        await websocket.accept()
        await websocket.send_json({"error": f"{MAX_VIDEO_CONNECTIONS} video streams are already open; "
                                   "try again shortly", "code": "busy"})
        await websocket.close(code=1013)
        return
    state.video_connections += 1
    pipeline = reader = None
    try:  # from here on the slot is given back whatever happens, a failed handshake included
        await websocket.accept()
        pipeline, variant = await asyncio.to_thread(app.state.served.video_pipeline)
        mailbox = LatestFrame()
        reader = asyncio.create_task(_read_frames(websocket, mailbox))
        frame_index = 0
        while True:
            try:
                item = await asyncio.wait_for(mailbox.take(), VIDEO_IDLE_TIMEOUT_S)
            except asyncio.TimeoutError:
                await _close_idle(websocket)
                break
            if item is None:
                break
            try:
                if isinstance(item, str):
                    reply = _control(pipeline, item)
                else:
                    reply = await asyncio.to_thread(_track, pipeline, variant, item, state.settings)
                    reply.update(frame=frame_index, dropped=mailbox.dropped)
                    frame_index += 1
            except ApiError as error:
                reply = {"error": error.message, "code": error.code}
            except Exception as error:  # the socket stays open for the next frame; the log has the trace
                log.exception("video frame failed")
                reply = {"error": f"internal error ({type(error).__name__}); the server log has it",
                         "code": "internal_error"}
            try:
                await websocket.send_json(reply)
            except (WebSocketDisconnect, RuntimeError):
                break
    finally:  # no await here: a handler cancelled at disconnect or shutdown would skip what follows one
        state.video_connections -= 1
        if reader is not None:
            reader.cancel()
        if pipeline is not None:
            pipeline.close()  # a flag for a one-thread pipeline: quick on the event loop


def install(app: FastAPI) -> None:
    app.state.video_connections = 0

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                                                "Cache-Control": "no-cache"})

    @app.get("/api/v1/samples")
    def samples():
        return [{"name": name, "url": f"/samples/{name}"} for name in available_samples()]

    @app.get("/samples/{name}", include_in_schema=False)
    def sample(name: str):
        if name not in available_samples():
            raise ApiError(404, "not_found", f"unknown sample {name!r}; expected one of {available_samples()}")
        return FileResponse(sample_path(name))

    @app.get("/api/v1/topology")
    def topology():
        return topology_json()

    app.add_api_websocket_route("/ws/video", video_socket)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
