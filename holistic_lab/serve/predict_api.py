"""`POST /predict`: one image (multipart field `image`) in, the 543 keypoints of the served variant
out (`payload.result_payload`), or a JSON refusal.

The body is counted as it arrives and refused with 413 past `max_upload_bytes` (a declared
Content-Length over it is refused before a byte is read); the image is decoded by content with
the pixel limit checked first (`decode.decode_upload`); the cascade runs in a worker thread on a
pipeline of the bounded pool (503 when busy), so the event loop keeps serving. Results are kept
in a `ResultCache`: the response's `X-Cache` header says `hit` or `miss`.
"""
from __future__ import annotations

import hashlib
import json
import time

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from .cache import ResultCache
from .decode import decode_upload
from .errors import ApiError
from .payload import result_payload
from .served import ServedModels

FIELD = "image"
# room for the multipart boundaries and part headers around the image itself
MULTIPART_OVERHEAD = 64 << 10


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    too_large = ApiError(413, "upload_too_large", f"the upload is over this server's limit of {limit} bytes "
                         f"({limit / 2**20:.3g} MiB)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def uploaded_image(request: Request, max_bytes: int) -> bytes:
    """The bytes of the multipart field `image`; 415 for another body type, 400 without the field."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ApiError(415, "expected_multipart", f"send the image as multipart/form-data in a file field "
                       f"'{FIELD}' (e.g. curl -F {FIELD}=@photo.jpg)")
    body = await read_body(request, max_bytes + MULTIPART_OVERHEAD)

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=4)
    except Exception as error:  # python-multipart's and starlette's parse errors have no common base
        raise ApiError(400, "bad_multipart", f"the multipart body cannot be parsed: {error}") from None
    upload = form.get(FIELD)
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "missing_image", f"no file field '{FIELD}' in the form; send the image as "
                       f"multipart/form-data field '{FIELD}'")
    data = await upload.read()
    await form.close()
    if len(data) > max_bytes:
        raise ApiError(413, "upload_too_large", f"the image is {len(data)} bytes, over this server's limit "
                       f"of {max_bytes}")
    return data


def predict_bytes(served: ServedModels, cache: ResultCache, data: bytes, max_pixels: int) -> tuple[bytes, bool]:
    """(the JSON body, whether it came from the cache) for one uploaded image; blocking. Only
    results are cached, so bytes found in the cache were an image: they are not decoded again."""
    sha256 = hashlib.sha256(data).hexdigest()
    cached = cache.get(sha256, served.key)
    if cached is not None:
        return cached, True
    # decoded only once a pipeline is free: at most pool_size images are in memory decoded (a
    # 64-megapixel upload is ~200 MB of RGB), however many requests wait
    with served.pipeline() as (pipeline, generation):
        start = time.perf_counter()
        rgb = decode_upload(data, max_pixels)
        decode_ms = (time.perf_counter() - start) * 1000
        result = pipeline.process(rgb)
        timings = {"decode": decode_ms, **pipeline.last_timings}
    if not result.present["pose"]:
        raise ApiError(422, "no_person", f"no person found in the {rgb.shape[1]}x{rgb.shape[0]} image: the pose "
                       "detector needs a person with the head and shoulders in view")
    body = json.dumps(result_payload(result, timings, generation.name, sha256), separators=(",", ":")).encode()
    cache.put(sha256, generation.key, body)
    return body, False


def install(app: FastAPI) -> None:
    served: ServedModels = app.state.served
    settings = app.state.settings
    app.state.result_cache = cache = ResultCache(settings.cache_size)

    @app.post("/predict", summary="the 543 keypoints of one image (multipart field 'image')")
    async def predict(request: Request) -> Response:
        data = await uploaded_image(request, settings.max_upload_bytes)
        body, hit = await run_in_threadpool(predict_bytes, served, cache, data, settings.max_pixels)
        return Response(body, media_type="application/json", headers={"X-Cache": "hit" if hit else "miss"})
