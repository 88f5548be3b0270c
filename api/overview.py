"""``GET /overview/``: the fleet at a glance, for the dashboard's first page: how many
devices, by status, the commonest product classes and software versions (top 20, the rest
summed as ``others``), and the devices that went Down last. Within the caller's scope."""

from __future__ import annotations

from typing import Any

from acs.clock import iso
from api.base import Api, ApiRequest, Result, route
from api.docs import Doc
from api.schema import integer, nullable, obj, string

TOP = 20
RECENT = 10

_GROUP = obj(
    {
        "values": {
            "type": "array",
            "items": obj({"value": nullable(string()), "count": integer(minimum=1)}, "*"),
            "maxItems": TOP,
        },
        "others": integer(minimum=0, description="Devices with any other value."),
    },
    "*",
)
OVERVIEW = obj(
    {
        "devices": integer(minimum=0),
        "by_status": obj({"Up": integer(minimum=0), "Down": integer(minimum=0)}, "*"),
        "by_product_class": _GROUP,
        "by_software_version": _GROUP,
        "recently_down": {
            "type": "array",
            "maxItems": RECENT,
            "items": obj(
                {
                    "id": integer(),
                    "serial_number": string(),
                    "name": string(),
                    "status_change": string(format="date-time"),
                },
                "*",
            ),
        },
    },
    "*",
)


def _group(rows: list[tuple[str | None, int]], total: int) -> dict[str, Any]:
    values = [{"value": value, "count": count} for value, count in rows]
    return {"values": values, "others": total - sum(count for _, count in rows)}


@route(
    "/overview/",
    methods=("GET",),
    doc=Doc("overview", "The fleet at a glance: counts by status, model, firmware", "meta",
            OVERVIEW),
)  # fmt: skip
def overview(api: Api, req: ApiRequest) -> Result:
    found = api.store.device_overview(req.principal.scope, top=TOP, recent=RECENT)
    total = found["total"]
    return 200, {
        "devices": total,
        "by_status": {
            "Up": found["by_status"].get("Up", 0),
            "Down": found["by_status"].get("Down", 0),
        },
        "by_product_class": _group(found["product_class"], total),
        "by_software_version": _group(found["software_version"], total),
        "recently_down": [
            {**row, "status_change": iso(row["status_change"])} for row in found["recently_down"]
        ],
    }
