"""`GET /`: the dashboard, one page from package data (service/static), no build step, no CDN.

The page is open (SPEC); its data come through the API with the user's own token. Its
scripts and styles are served by Quart's static route (/static/…).
"""

from __future__ import annotations

from importlib import resources

from quart import Blueprint, Response

bp = Blueprint("dashboard", __name__)

# Only this origin: the page works offline, and an injected script could not phone home.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


@bp.get("/")
async def index() -> Response:
    page = resources.files("service").joinpath("static/index.html").read_bytes()
    return Response(
        page,
        content_type="text/html; charset=utf-8",
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
