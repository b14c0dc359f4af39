"""The API reference, for logged-in users: FastAPI's interactive docs (Swagger UI at /docs, ReDoc at /redoc),
reading the authenticated /openapi.json and served by this server alone.

FastAPI's documented self-hosting: its own docs routes are off (`docs_url=None`) and `get_swagger_ui_html` /
`get_redoc_html` point at copies of the scripts and styles from the `fastapi-offline` package, mounted at
ASSETS_URL. Nothing is fetched from a CDN at run time, so the reference works offline (an emergency office's
network may be cut off) and its CSP names no other origin. The one inline script (Swagger UI's start-up) is
allowed by its hash, not by 'unsafe-inline'; both UIs inject their own styles, hence style-src 'unsafe-inline'.
(ReDoc's menu shows its vendor's logo from that vendor's CDN: the CSP refuses it, and the reference loses nothing.)
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from api.deps import PageUser
from api.pages.rendering import page_router

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-assets"
TITLE = "Baton API"
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def _with_csp(page: HTMLResponse) -> HTMLResponse:
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
                      for script in _INLINE_SCRIPT.findall(bytes(page.body)))
    page.headers["Content-Security-Policy"] = (
        f"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        f"script-src 'self' {hashes}".rstrip() + "; worker-src 'self' blob:; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'")
    return page


router = page_router()


@router.get("/docs")
def api_docs(principal: PageUser) -> HTMLResponse:
    return _with_csp(get_swagger_ui_html(
        openapi_url="/openapi.json", title=TITLE, swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css", swagger_favicon_url=f"{ASSETS_URL}/favicon.png"))


@router.get("/redoc")
def api_redoc(principal: PageUser) -> HTMLResponse:
    return _with_csp(get_redoc_html(
        openapi_url="/openapi.json", title=TITLE, redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False))
