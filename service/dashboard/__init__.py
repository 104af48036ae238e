"""``/dashboard``: a web page of what the logged-in user may see, refreshed live.

The page (``static/dashboard.html``) and its script (``static/dashboard.js``) hold no data
and are served to anyone; the script asks for a token (the same bearer token as the API,
kept in the tab's ``sessionStorage``, never in a cookie) and fetches ``GET /v1/dashboard``
with it every few seconds. Authentication by header, not cookie, is what makes it
CSRF-safe: another site can make a browser send requests, but not this header. A strict
Content-Security-Policy (only this origin's script, no inline script) and
``frame-ancestors 'none'`` keep the page from being framed or injected into; the script
writes data only as text nodes and SVG attributes, never as HTML.

``GET /v1/dashboard`` answers for the token's user only (``service.dashboard.queries``):
endpoints they may see (online, managers, workers, load, where they run for their owner),
their task groups with progress, their recent failures with tracebacks, and per minute of
the last hour their tasks finished per second and the mean round trip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, send_file

from service.api.common import current_user, services
from service.dashboard import queries
from service.openapi import operation

STATIC = Path(__file__).parent / "static"
PUBLIC_VIEWS = frozenset({"dashboard.page", "dashboard.script", "dashboard.style"})
"""Views served without a token: they hold no data."""
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
          "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

pages = Blueprint("dashboard", __name__)
api = Blueprint("dashboard_api", __name__)


def _static(name: str, mimetype: str) -> Response:
    response = send_file(STATIC / name, mimetype=mimetype, max_age=0)
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@pages.get("/dashboard")
@operation("The dashboard page (no data in it: it asks for a token and reads /v1/dashboard)", response="html")
def page() -> Response:
    return _static("dashboard.html", "text/html")


@pages.get("/dashboard/dashboard.js")
@operation("The dashboard's script", response="text")
def script() -> Response:
    return _static("dashboard.js", "text/javascript")


@pages.get("/dashboard/dashboard.css")
@operation("The dashboard's style sheet", response="text")
def style() -> Response:
    return _static("dashboard.css", "text/css")


@api.get("/dashboard")
@operation("What the dashboard shows the token's user: their visible endpoints, their task groups, "
           "recent failures and the last hour's tasks/s and round trip")
def data() -> dict[str, Any]:
    user = current_user()
    context = services()
    return {"user": user.name,
            "endpoints": queries.endpoints(context.store, user.user_id, context.config.heartbeat_threshold),
            **queries.user_tasks(str(context.config.database_path), user.user_id)}
