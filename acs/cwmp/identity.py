"""What a CPE's identity may look like: the DeviceId rules, one place for the CWMP edge and
the REST API alike (sans-IO: plain functions of strings).

A serial number names the device in URLs (``/inventory_device_serial/{serial}/``), in logs
and on every device list, so it gets the strictest rule: 1-64 characters (the DeviceId
limit of TR-069 A.3.3.1), no ``/``, no whitespace, nothing unprintable (:func:`printable`:
control characters, bidirectional overrides, zero-width characters, separators...). The
other DeviceId fields keep their XSD lengths and may not carry unprintable characters. The
REST API holds names and text to the same :func:`printable`.
"""

from __future__ import annotations

import unicodedata

from acs.cwmp import rpc

MAX_SERIAL = 64
# DeviceIdStruct (cwmp-1-x.xsd): Manufacturer 64, OUI 6, ProductClass 64, SerialNumber 64.
_DEVICE_ID_LIMITS = (("Manufacturer", 64), ("OUI", 6), ("ProductClass", 64))


# Control (Cc), format (Cf: bidirectional overrides, zero-width...), surrogate (Cs) and
# separator (Zl, Zp, Zs) characters; ' ' is the one exception.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Zs"})


def printable(text: str) -> bool:
    """No character of :data:`REFUSED_CATEGORIES` but ' ': ``str.isprintable``, except that
    unassigned and private-use code points pass. They neither steer the text (as bidirectional
    and zero-width characters do) nor break lines; refusing unassigned ones would make the
    rule move with every Unicode version, and the two together are some 970,000 code points,
    which the OpenAPI document (api.openapi) could only spell out as a class no client
    validates quickly. The refused ones are a few hundred."""
    return text.isprintable() or not any(
        c != " " and unicodedata.category(c) in REFUSED_CATEGORIES for c in text
    )


def serial_problem(value: str) -> str | None:
    """Why ``value`` is not a valid serial number (a DRF-style sentence), or None."""
    if not value:
        return "This field may not be blank."
    if len(value) > MAX_SERIAL:
        return f"Ensure this field has no more than {MAX_SERIAL} characters."
    if "/" in value or any(c.isspace() for c in value):
        return "May not contain '/' or whitespace."
    if not printable(value):
        return "Control characters are not allowed."
    return None


def device_id_problem(device_id: rpc.DeviceId) -> str | None:
    """Why an Inform's DeviceId is refused (safe to log: no raw value in it), or None."""
    problem = serial_problem(device_id.serial_number)
    if problem is not None:
        return f"SerialNumber: {problem}"
    values = (device_id.manufacturer, device_id.oui, device_id.product_class)
    for (name, limit), value in zip(_DEVICE_ID_LIMITS, values, strict=True):
        if len(value) > limit:
            return f"{name}: Ensure this field has no more than {limit} characters."
        if not printable(value):
            return f"{name}: Control characters are not allowed."
    return None


def bounded(value: str | None, limit: int) -> str | None:
    """A CPE-reported string as stored: at most ``limit`` characters, printable, else None."""
    if value is None or len(value) > limit or not printable(value):
        return None
    return value
