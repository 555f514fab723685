"""`create_app(settings)`: the FastAPI app, put together from one module per concern. Each
module's `install(app)` adds its routes and state (the served models, `app.state.served`, are
made first: /predict, the video socket and the model endpoints share them); what must be released at shutdown (pipelines,
job processes) is appended to `app.state.closers` and closed in reverse order."""
from __future__ import annotations

import contextlib
import logging

from fastapi import FastAPI

from .. import __version__
from ..train.config import MAX_JOB_BYTES
from . import jobs_api, models_api, page, predict_api
from .body_limit import BodyLimit
from .errors import install_error_handlers
from .served import ServedModels
from .settings import ServeSettings

log = logging.getLogger("holistic_lab.serve")


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    close_app(app)


def close_app(app: FastAPI) -> None:
    """Release what `install` opened, newest first; idempotent."""
    closers = app.state.closers
    while closers:
        closer = closers.pop()
        try:
            closer()
        except Exception:  # one failing closer must not leave the others open
            log.exception("closing %r failed", closer)


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The app; its OpenAPI description is at /openapi.json (no /docs page: Swagger UI loads from a CDN,
    and this server works offline)."""
    settings = settings or ServeSettings()
    app = FastAPI(title="holistic-lab", version=__version__, docs_url=None, redoc_url=None, lifespan=_lifespan)
    app.state.settings = settings
    app.state.served = ServedModels(settings)  # the pipelines every route that tracks shares
    app.state.closers = [app.state.served.close]
    install_error_handlers(app)
    # JSON bodies are job configs and short requests; /predict bounds its upload itself
    app.add_middleware(BodyLimit, limit=MAX_JOB_BYTES, exempt=("/predict",))
    for module in (models_api, predict_api, jobs_api, page):
        module.install(app)
    return app
