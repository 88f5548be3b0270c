"""CWMP protocol versions, one set of rules for both roles (TR-069 A6 §3.7.4, sans-IO).

The ACS negotiates (``negotiate_version``, ``namespace_versions``); a CPE announces what it
speaks (``offered_versions``) and adopts what the InformResponse says (``adopt_version``,
``session_namespace``); both ask ``defines`` whether a version has a method.
"""

from __future__ import annotations

import re

from acs.cwmp import rpc, soap

# Every version this code speaks, oldest first. A 1.4 CPE announcing SupportedCWMPVersions
# gets the highest version both sides support.
VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2", "1.3", "1.4")


def version_key(version: str | None) -> tuple[int, int] | None:
    """``"1.3"`` -> ``(1, 3)``; None for anything that is not ``<digits>.<digits>``."""
    major, sep, minor = (version or "").strip().partition(".")
    if not sep or not major.isdigit() or not minor.isdigit():
        return None
    return int(major), int(minor)


def defines(version: str | None, message_type: type) -> bool:
    """Whether CWMP ``version`` has the method ``message_type`` (``rpc.INTRODUCED_IN``)."""
    since = rpc.INTRODUCED_IN.get(message_type)
    if since is None:
        return True
    return (version_key(version or "1.0") or (1, 0)) >= (version_key(since) or (1, 0))


# The FileTypes of Download and Upload before CWMP 1.2 (cwmp-1-0/1-1.xsd list them; 1.2
# opened the pattern to tones, ringers and the instance forms), besides a vendor's own.
_EARLY_FILE_TYPES: dict[type, frozenset[str]] = {
    rpc.Download: frozenset(
        {"1 Firmware Upgrade Image", "2 Web Content", "3 Vendor Configuration File"}
    ),
    rpc.Upload: frozenset({"1 Vendor Configuration File", "2 Vendor Log File"}),
}
_VENDOR_FILE_TYPE = re.compile(r"X [0-9A-F]{6} .*")


def lacks(version: str | None, message: rpc.Message) -> str | None:
    """What CWMP ``version`` has not that ``message`` needs ("which has no ..."), None when
    a session of that version may carry it: its method, and a Download's or Upload's
    FileType."""
    since = rpc.INTRODUCED_IN.get(type(message))
    if not defines(version, type(message)):
        return f"which has no {type(message).__name__} (CWMP {since} and later)"
    early = _EARLY_FILE_TYPES.get(type(message))
    file_type: str = getattr(message, "file_type", "")
    if (
        early is not None
        and (version_key(version or "1.0") or (1, 0)) < (1, 2)
        and file_type not in early
        and not _VENDOR_FILE_TYPE.fullmatch(file_type)
    ):
        return f"which has no FileType {file_type!r} (CWMP 1.2 and later)"
    return None


def namespace_versions(ns: str) -> tuple[str, ...]:
    """The versions a session in namespace ``ns`` can be (spec/cwmp.md §1.2).

    ``cwmp-1-0`` and ``cwmp-1-1`` name one version each; ``cwmp-1-2`` is the namespace of
    1.2, 1.3 and 1.4 (the 1.3 and 1.4 schemas extend it), and so are the non-normative
    ``cwmp-1-3`` / ``cwmp-1-4`` URIs some stacks send (GenieACS sends 1-3 in 1.4 sessions).
    """
    version = soap.version_of(ns)
    if (version_key(version) or (1, 0)) < (1, 2):
        return (version,)
    return tuple(v for v in VERSIONS if (version_key(v) or (0, 0)) >= (1, 2))


def negotiate_version(
    offered: tuple[str, ...] | str, ours: tuple[str, ...] = VERSIONS
) -> str | None:
    """Highest version in both ``offered`` (the CPE's SupportedCWMPVersions) and ``ours``."""
    items = offered.split(",") if isinstance(offered, str) else offered
    theirs = {k for k in (version_key(v) for v in items) if k is not None}
    common = [v for v in ours if version_key(v) in theirs]
    if not common:
        return None
    return max(common, key=lambda v: version_key(v) or (0, 0))


def offered_versions(own: str) -> str:
    """A CPE's SupportedCWMPVersions: every version up to its own."""
    key = version_key(own) or (1, 0)
    return ",".join(v for v in VERSIONS if (version_key(v) or (1, 0)) <= key)


def adopt_version(own: str, acs_ns: str, use_version: str | None) -> str:
    """The version a CPE speaking ``own`` uses after the ACS's InformResponse.

    The lower of the two sides (TR-069 A6 §3.7.4; ICWMP adopts the lower namespace):
    ``UseCWMPVersion`` counts when the CPE offered versions (1.4); the InformResponse
    namespace counts when it differs from the CPE's own, or when a 1.4 CPE got no
    ``UseCWMPVersion`` (an ACS that ignored the offer speaks the namespace's version).
    """
    own_key = version_key(own)
    assert own_key is not None, own
    chosen = own_key
    use_key = version_key(use_version)
    if use_key is not None and own_key >= (1, 4):
        chosen = min(chosen, use_key)
    try:
        ns_key = version_key(soap.version_of(acs_ns))
    except ValueError:
        ns_key = None
    if ns_key is not None and (
        acs_ns != soap.CWMP_NS[own] or (own_key >= (1, 4) and use_key is None)
    ):
        chosen = min(chosen, ns_key)
    return f"{chosen[0]}.{chosen[1]}"


def session_namespace(own: str, adopted: str, acs_ns: str) -> str:
    """The namespace for the rest of the session: ours, unless we stepped down to the ACS's."""
    if adopted == own:
        return soap.CWMP_NS[own]
    try:
        if soap.version_of(acs_ns) == adopted:
            return acs_ns  # exactly as the ACS wrote it (GA writes cwmp-1-3, say)
    except ValueError:
        pass
    return soap.CWMP_NS.get(adopted, acs_ns)
