"""TR-069 parameter values (§A.2.1 and the TR-106 data types): the xsd types a CWMP Value
may carry, their ranges and lexical forms, shared by the ACS (what the API may ask a CPE
to set, what a desired setting's type is) and the simulator (what a CPE accepts).

Sans-IO and strict: a value is judged as the text that travels in the envelope. A CPE may
be more lenient before it judges (the simulator strips blanks and folds case first).
"""

from __future__ import annotations

import base64
import binascii
import re

# The types a CWMP Value may carry, without the "xsd:" prefix of the wire.
XSD_TYPES = (
    "string",
    "int",
    "unsignedInt",
    "long",
    "unsignedLong",
    "boolean",
    "dateTime",
    "base64",
    "hexBinary",
)
# TR-106 data models also declare "decimal"; CWMP carries it as text, and a CPE may say so.
WIRE_TYPES = tuple(f"xsd:{t}" for t in (*XSD_TYPES, "decimal"))

INT_RANGES: dict[str, tuple[int, int]] = {
    "int": (-(2**31), 2**31 - 1),
    "unsignedInt": (0, 2**32 - 1),
    "long": (-(2**63), 2**63 - 1),
    "unsignedLong": (0, 2**64 - 1),
}
BOOLEAN_TEXTS = ("true", "false", "1", "0")
# The longest value the ACS sends or stores (cwmp-1-2.xsd sets no bound; this keeps one
# request from building an envelope no CPE will swallow).
MAX_VALUE = 65535

# What XML 1.0 cannot carry, even as a character reference: a value holding one could never
# be sent to a CPE (and PostgreSQL's TEXT refuses NUL). VALUE_PATTERN says it in the API's
# JSON Schemas; lone surrogates, which no JSON Schema class can name portably (UTF-16
# regex engines see an astral character as two), are refused here alone.
_NOT_XML_CHARS = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff"
VALUE_PATTERN = f"^[^{_NOT_XML_CHARS}]*$"
_NOT_XML = re.compile(f"[{_NOT_XML_CHARS}\\ud800-\\udfff]")
_INTEGER = re.compile(r"-?[0-9]+")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})?"
)
_HEX = re.compile(r"([0-9A-Fa-f]{2})*")


def bare(xsd: str) -> str:
    """``xsd:int`` -> ``int`` (a bare name is returned as it is)."""
    return xsd.removeprefix("xsd:")


def type_problem(text: str, xsd: str) -> str | None:
    """Why ``text`` is not a value of type ``xsd`` (bare or ``xsd:``-prefixed), or None.
    Strings, decimals and unknown types take any text XML can carry, up to
    :data:`MAX_VALUE` characters."""
    if len(text) > MAX_VALUE:
        return f"is longer than {MAX_VALUE} characters"
    unsendable = _NOT_XML.search(text)
    if unsendable:
        return f"holds U+{ord(unsendable.group()):04X}, which XML cannot carry"
    kind = bare(xsd)
    if kind == "boolean":
        return None if text in BOOLEAN_TEXTS else f"{text!r} is not a boolean (true, false, 1 or 0)"
    if kind in INT_RANGES:
        if not _INTEGER.fullmatch(text):
            return f"{text!r} is not an integer (xsd:{kind})"
        low, high = INT_RANGES[kind]
        return None if low <= int(text) <= high else f"{text} is out of range for xsd:{kind}"
    if kind == "dateTime":
        return None if _DATETIME.fullmatch(text) else f"{text!r} is not an xsd:dateTime"
    if kind == "hexBinary":
        return None if _HEX.fullmatch(text) else f"{text!r} is not xsd:hexBinary"
    if kind == "base64":
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return f"{text!r} is not xsd:base64"
    return None


def values_equal(a: str, b: str, xsd: str) -> bool:
    """Whether the CPE's value ``a`` is the desired ``b`` of type ``xsd`` (CPEs report
    booleans as 1/0 and integers in their own spelling; anything else compares as text)."""
    if a == b:
        return True
    kind = bare(xsd)
    left, right = a.strip(), b.strip()
    if kind == "boolean":
        truth = {"true": True, "1": True, "false": False, "0": False}
        found = truth.get(left.lower()), truth.get(right.lower())
        return found[0] is not None and found[0] == found[1]
    if kind in INT_RANGES:
        return bool(_INTEGER.fullmatch(left) and _INTEGER.fullmatch(right)) and int(left) == int(
            right
        )
    return False


def infer_type(text: str) -> str:
    """The wire type of a value whose parameter's type is not known: an unsigned int, a
    boolean, else a string."""
    if _INTEGER.fullmatch(text) and not text.startswith("-") and int(text) <= 2**32 - 1:
        return "xsd:unsignedInt"
    if text in ("true", "false"):
        return "xsd:boolean"
    return "xsd:string"
