"""TR-069 parameter-path rules shared by the ACS, the API, the store and the simulator.

The two data-model roots (TR-181 ``Device.``, TR-098 ``InternetGatewayDevice.``), the
parameter-path grammar of TR-069 §A.2.2.1 (names, instance numbers and the CWMP 1.4
alias-based addressing ``[alias]``), and the ManagementServer parameters that carry the
ACS's own connection to the CPE, which no desired setting may touch.
"""

from __future__ import annotations

import re

DEFAULT_ROOT = "Device."
ROOTS = ("Device.", "InternetGatewayDevice.")

# One path segment: a name, an instance number, or "[alias]".
SEGMENT = r"(?:[A-Za-z0-9_\-]+|\[[A-Za-z0-9_\-.:]+\])"
PATH_RE = re.compile(rf"^[A-Za-z_][A-Za-z0-9_\-]*(?:\.{SEGMENT})*\.?$")
# An object path ending in an instance: "....WANDevice.1." or "....SSID.[home]."
INSTANCE_RE = re.compile(r"\.(?:[0-9]+|\[[A-Za-z0-9_\-.:]+\])\.$")

# The longest parameter name cwmp-1-2.xsd allows.
MAX_PATH = 256
# A full parameter name a desired setting may name: under a data model root, no trailing '.',
# and aliases without '.' (stored settings are split on it).
SETTING_NAME_PATTERN = r"^(Device|InternetGatewayDevice)(\.([A-Za-z0-9_-]+|\[[A-Za-z0-9_:-]+\]))+$"
_SETTING_NAME = re.compile(SETTING_NAME_PATTERN)

# The ACS's own connection to the CPE (device credentials and connection requests): a
# desired setting on these would cut the ACS off from the CPE.
ACS_MANAGED_SUFFIXES = (
    "ManagementServer.URL",
    "ManagementServer.Username",
    "ManagementServer.Password",
    "ManagementServer.ConnectionRequestUsername",
    "ManagementServer.ConnectionRequestPassword",
    "ManagementServer.STUNUsername",
    "ManagementServer.STUNPassword",
    "ManagementServer.ConnReqAllowedJabberIDs",
)


# XMPP connection requests (TR-069 Annex K), under the device's root (TR-181 Device:2.7
# and later): the CPE's JID, the JIDs it takes requests from, and the resource of the
# XMPP accounts the ACS gives CPEs ([xmpp] accounts).
JABBER_ID = "ManagementServer.ConnReqJabberID"
ALLOWED_JABBER_IDS = "ManagementServer.ConnReqAllowedJabberIDs"
DEVICE_RESOURCE = "cwmp"


def is_setting_name(path: object) -> bool:
    """Whether ``path`` may be a desired setting's name (:data:`SETTING_NAME_PATTERN`)."""
    return isinstance(path, str) and len(path) <= MAX_PATH and bool(_SETTING_NAME.fullmatch(path))


def known_root(root: str | None) -> str | None:
    """``root`` if it is one of ``ROOTS``, else None."""
    return root if root in ROOTS else None
