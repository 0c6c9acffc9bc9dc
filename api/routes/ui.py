"""The dashboard: one HTML page, one script and one stylesheet from ``api/static``.

``/ui/`` lists campaigns and ``/ui/campaigns/{id}`` shows the latest run live
(the script picks the view from the path). The pages themselves hold no data
and need no key: the script asks for the key once, keeps it in
``sessionStorage`` and sends it as ``X-API-Key`` on every call, including the
stream (read with ``fetch``, so the key never appears in a URL).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, RedirectResponse, Response

router = APIRouter(tags=["ui"], include_in_schema=False)

STATIC = Path(__file__).resolve().parent.parent / "static"
# Only these files, by exact name: nothing else under static/ is reachable. uPlot
# (MIT, v1.6.32, github.com/leeoniya/uPlot, its LICENSE beside it in vendor/) draws
# the timeline chart; it sets styles through the CSSOM only, which the CSP allows.
FILES = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
}
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _page() -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/ui")
def ui_root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
def ui_campaigns() -> Response:
    return _page()


@router.get("/ui/campaigns/{campaign_id}")
def ui_campaign(campaign_id: str) -> Response:
    return _page()


@router.get("/ui/static/{name:path}")
def ui_static(name: str) -> Response:
    media_type = FILES.get(name)
    if media_type is None:
        raise HTTPException(404)
    return FileResponse(STATIC / name, media_type=media_type, headers=HEADERS)
