"""``GET /metrics``: the appliance's Prometheus metrics (:mod:`acs.metrics`), in the text
exposition format (0.0.4) ``prometheus_client`` writes.

Served at the root next to ``/healthz`` (not under ``/api/v1``) because that is where
scrapers look. Unlike ``/healthz`` it needs a bearer token (viewer or higher), and one
without organization scope: the figures cover every organization, so a scoped token gets
403. (Not ``prometheus_client``'s own Twisted resource: it serves without authentication.)
"""

from __future__ import annotations

from acs.metrics import CONTENT_TYPE
from api.base import Api, ApiRequest, RawBody, Result, forbidden, route
from api.docs import Doc
from api.schema import JSON, ref, string


@route(
    "/metrics",
    methods=("GET",),
    role="viewer",
    prefix="",
    doc=Doc(
        "metrics",
        "Prometheus metrics",
        "meta",
        description="Counters over every organization, so a token scoped to some "
        "organizations gets 403.",
        responses={
            "200": {
                "description": "Prometheus text exposition format 0.0.4.",
                "content": {"text/plain": {"schema": string()}},
            },
            "503": {
                "description": "The store is unavailable.",
                "content": {JSON: {"schema": ref("Error")}},
            },
        },
    ),
)
def metrics(api: Api, req: ApiRequest) -> Result:
    if req.principal.scope is not None:
        raise forbidden("Metrics cover every organization: use a token without scope.")
    try:
        text = api.appliance.metrics.render()
    except Exception:
        # A scrape of a broken database is an error answer, not a traceback.
        api.log.failure("metrics: store unavailable")
        return 503, {"detail": "store unavailable"}
    return 200, RawBody(text, CONTENT_TYPE)
