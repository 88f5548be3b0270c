"""Which CWMP values are secrets, and SOAP text with them blanked (sans-IO).

One rule for the API's parameter views and the debug transcripts (redacted before they are
stored): a parameter whose last name segment ends in one of ``SECRET_SUFFIXES``
(``ConnectionRequestPassword``, ``KeyPassphrase``, ``PreSharedKey``, ``WEPKey``...) holds a
credential; so does any element named that way (Download/Upload ``Password``, vendor
extensions), and the query string of a transfer ``URL`` (the ACS's signed URLs are
capabilities until they expire).
"""

from __future__ import annotations

import re

# Last path segments (lower-cased suffixes) whose values are credentials.
SECRET_SUFFIXES = ("password", "passphrase", "presharedkey", "wepkey", "secret")
REDACTED = "[redacted]"


def is_secret_path(path: str) -> bool:
    """True for parameters holding credentials (``...Password``, ``...KeyPassphrase``,
    ``...PreSharedKey``, ``...WEPKey``, ``...Secret``; case-insensitive)."""
    return path.rsplit(".", 1)[-1].lower().endswith(SECRET_SUFFIXES)


def _is_secret_element(tag: str) -> bool:
    return tag.rsplit(":", 1)[-1].lower().endswith(SECRET_SUFFIXES)


# <Name>path</Name> followed by its <Value ...>value</Value> (ParameterValueStruct), and the
# reverse order some CPEs emit; namespace prefixes allowed.
_NAME = r"<(?:[\w.-]+:)?Name\b[^>]*>\s*(?P<name>[^<]*?)\s*</(?:[\w.-]+:)?Name\s*>"
_VALUE_OPEN = r"<(?P<vtag>(?:[\w.-]+:)?Value)\b[^>]*(?<!/)>"
# Element text: plain characters or CDATA sections. Never `.*?` across tags: that would
# rescan the rest of a large GetParameterValuesResponse for every value (quadratic).
_TEXT = r"(?:<!\[CDATA\[.*?\]\]>|[^<])*"
_NAME_THEN_VALUE = re.compile(
    rf"(?P<head>{_NAME}\s*{_VALUE_OPEN})(?P<value>{_TEXT})(?P<tail></(?P=vtag)\s*>)", re.S
)
_VALUE_THEN_NAME = re.compile(
    rf"(?P<head>{_VALUE_OPEN})(?P<value>{_TEXT})(?P<tail></(?P=vtag)\s*>\s*{_NAME})", re.S
)
# Any element named like a credential (Download/Upload <Password>, vendor extensions).
_SECRET_ELEMENT = re.compile(
    rf"(?P<head><(?P<tag>(?:[\w.-]+:)?[\w.-]+)\b[^>]*(?<!/)>)"
    rf"(?P<value>{_TEXT})(?P<tail></(?P=tag)\s*>)",
    re.S,
)
# A URL element's query string (signature and expiry of a signed transfer URL).
_URL_QUERY = re.compile(r"(?P<head><(?:[\w.-]+:)?URL\b[^>]*>[^<?]*\?)[^<]*(?P<tail></)")


def redact_transcript(text: str) -> str:
    """The transcript with every credential value replaced by ``[redacted]``."""

    def parameter(match: re.Match[str]) -> str:
        if not is_secret_path(match.group("name")):
            return match.group(0)
        return match.group("head") + REDACTED + match.group("tail")

    def element(match: re.Match[str]) -> str:
        if not _is_secret_element(match.group("tag")) or not match.group("value"):
            return match.group(0)
        return match.group("head") + REDACTED + match.group("tail")

    text = _NAME_THEN_VALUE.sub(parameter, text)
    text = _VALUE_THEN_NAME.sub(parameter, text)
    text = _SECRET_ELEMENT.sub(element, text)
    return _URL_QUERY.sub(rf"\g<head>{REDACTED}\g<tail>", text)
