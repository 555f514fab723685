"""Chapter 10: the served model. `create_app(ServeSettings(...))` is the FastAPI app behind
`holistic-lab serve`: the page at `/`, `POST /predict`, live video over a WebSocket, the model
endpoints and DESIGN.md's fine-tuning job API.

    from holistic_lab.serve import ServeSettings, create_app
    app = create_app(ServeSettings(workspace="work"))      # then uvicorn.run(app, ...)
"""
from .app import create_app
from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
