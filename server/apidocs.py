"""The API reference pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with no network.

FastAPI's built-in pages load Swagger UI and ReDoc from a CDN (and ReDoc its fonts from Google),
so they stay blank on an air-gapped machine. Here the assets come from the
``fastapi-standalone-docs`` package (Swagger UI 5 and ReDoc 2, both able to render FastAPI's
OpenAPI 3.1 schema), served under :data:`ASSETS` by FastAPI's documented pattern for self-hosted
docs assets: the app is made with ``docs_url=None, redoc_url=None`` and these routes take over.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_standalone_docs
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

#: URL prefix of the Swagger UI / ReDoc files
ASSETS = "/docs-assets"
STATIC = Path(fastapi_standalone_docs.__file__).resolve().parent / "static"
FAVICON = f"{ASSETS}/fastapi/favicon.png"


def install_api_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve Swagger UI at ``docs_url`` and ReDoc at ``redoc_url`` from local files.

    ``app`` must be created with ``docs_url=None, redoc_url=None`` (else FastAPI's CDN pages answer first).
    """
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - Swagger UI", swagger_favicon_url=FAVICON,
                                   swagger_js_url=f"{ASSETS}/swagger/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger/swagger-ui.css",
                                   swagger_ui_parameters={"validatorUrl": None})  # no call to swagger.io's validator

    @app.get(redoc_url, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc", redoc_favicon_url=FAVICON,
                              redoc_js_url=f"{ASSETS}/redoc/redoc.standalone.js", with_google_fonts=False)

    @app.get(f"{redoc_url}/logo-mini.svg", include_in_schema=False)
    async def redoc_logo() -> FileResponse:
        # the packaged redoc.standalone.js asks for its logo at <page path>/logo-mini.svg (instead of Redocly's CDN)
        return FileResponse(STATIC / "redoc" / "logo-mini.svg", media_type="image/svg+xml")
