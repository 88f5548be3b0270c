"""Test helper: validate CWMP SOAP messages against the official Broadband Forum XSDs.

Owns loading ``conformance/xsd/cwmp-1-{0..4}.xsd`` (vendored: tests/vendored.py) with no
network: the CWMP schemas import the SOAP 1.1 envelope and encoding schemas and include each
other by URL, so an lxml ``Resolver`` maps those URLs to local files, and to the minimal SOAP
stand-ins defined here.
"""

from __future__ import annotations

import functools
from typing import Any

from lxml import etree
from vendored import XSD_DIR, xsd

VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4")

NS_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS_SOAP_ENC = "http://schemas.xmlsoap.org/soap/encoding/"
_BBF_URL = "http://www.broadband-forum.org/cwmp/"

# Minimal SOAP 1.1 envelope schema: the real one's structure, with Body children validated
# strictly (so a message the CWMP schema does not declare fails) and Header children laxly
# (only the cwmp header elements are declared; e.g. the deprecated NoMoreRequests is not).
SOAP_ENV_XSD = f"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="{NS_SOAP_ENV}"
           targetNamespace="{NS_SOAP_ENV}" elementFormDefault="unqualified"
           attributeFormDefault="qualified">
  <xs:element name="Envelope">
    <xs:complexType>
      <xs:sequence>
        <xs:element ref="tns:Header" minOccurs="0"/>
        <xs:element ref="tns:Body"/>
        <xs:any namespace="##other" minOccurs="0" maxOccurs="unbounded" processContents="lax"/>
      </xs:sequence>
      <xs:anyAttribute namespace="##other" processContents="lax"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="Header">
    <xs:complexType>
      <xs:sequence>
        <xs:any namespace="##other" minOccurs="0" maxOccurs="unbounded" processContents="lax"/>
      </xs:sequence>
      <xs:anyAttribute namespace="##other" processContents="lax"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="Body">
    <xs:complexType>
      <xs:sequence>
        <xs:any namespace="##any" minOccurs="0" maxOccurs="unbounded" processContents="strict"/>
      </xs:sequence>
      <xs:anyAttribute namespace="##any" processContents="lax"/>
    </xs:complexType>
  </xs:element>
  <xs:attribute name="mustUnderstand">
    <xs:simpleType>
      <xs:restriction base="xs:boolean">
        <xs:pattern value="0|1"/>
      </xs:restriction>
    </xs:simpleType>
  </xs:attribute>
  <xs:attribute name="actor" type="xs:anyURI"/>
  <xs:attribute name="encodingStyle" type="xs:string"/>
  <xs:element name="Fault">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="faultcode" type="xs:QName"/>
        <xs:element name="faultstring" type="xs:string"/>
        <xs:element name="faultactor" type="xs:anyURI" minOccurs="0"/>
        <xs:element name="detail" minOccurs="0">
          <xs:complexType>
            <xs:sequence>
              <xs:any namespace="##any" minOccurs="0" maxOccurs="unbounded"
                      processContents="lax"/>
            </xs:sequence>
            <xs:anyAttribute namespace="##any" processContents="lax"/>
          </xs:complexType>
        </xs:element>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""

# Minimal SOAP 1.1 encoding schema: what the CWMP schemas reference (Array, arrayType, base64).
SOAP_ENC_XSD = f"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="{NS_SOAP_ENC}"
           targetNamespace="{NS_SOAP_ENC}">
  <xs:attribute name="arrayType" type="xs:string"/>
  <xs:attribute name="offset" type="xs:string"/>
  <xs:complexType name="Array">
    <xs:sequence>
      <xs:any namespace="##any" minOccurs="0" maxOccurs="unbounded" processContents="lax"/>
    </xs:sequence>
    <xs:attribute ref="tns:arrayType"/>
    <xs:attribute ref="tns:offset"/>
    <xs:anyAttribute namespace="##other" processContents="lax"/>
  </xs:complexType>
  <xs:simpleType name="base64">
    <xs:restriction base="xs:base64Binary"/>
  </xs:simpleType>
</xs:schema>
"""


class _LocalResolver(etree.Resolver):
    """Serves the schemas' import/include URLs from local data: no network in tests."""

    # lxml-stubs 0.5 omit the `context` argument and resolve_filename.
    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:  # type: ignore[override]
        if system_url.rstrip("/") == NS_SOAP_ENV.rstrip("/"):
            return self.resolve_string(SOAP_ENV_XSD, context, base_url=None)
        if system_url.rstrip("/") == NS_SOAP_ENC.rstrip("/"):
            return self.resolve_string(SOAP_ENC_XSD, context, base_url=None)
        if system_url.startswith(_BBF_URL):
            path = str(xsd(system_url[len(_BBF_URL) :]))
            return self.resolve_filename(path, context)  # type: ignore[attr-defined]
        raise AssertionError(f"schema refers to an unexpected location: {system_url}")


def _version_file(version: str) -> str:
    if version not in VERSIONS:
        raise ValueError(f"unknown CWMP version {version!r}")
    return "cwmp-" + version.replace(".", "-") + ".xsd"


@functools.cache
def schema(version: str) -> etree.XMLSchema:
    """The combined SOAP envelope + CWMP schema for one CWMP version (cached)."""
    driver = f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
      <xs:import namespace="{NS_SOAP_ENV}" schemaLocation="{NS_SOAP_ENV}"/>
      <xs:import namespace="{cwmp_namespace(version)}"
                 schemaLocation="{_BBF_URL}{_version_file(version)}"/>
    </xs:schema>"""
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_LocalResolver())
    doc = etree.fromstring(driver.encode(), parser, base_url=str(XSD_DIR) + "/driver.xsd")
    return etree.XMLSchema(doc)


def cwmp_namespace(version: str) -> str:
    major, minor = version.split(".")
    return f"urn:dslforum-org:cwmp-{major}-{min(int(minor), 2)}"


@functools.cache
def defined_elements(version: str) -> frozenset[str]:
    """Local names of the top-level elements the CWMP schema of ``version`` declares."""
    names: set[str] = set()
    xs = "{http://www.w3.org/2001/XMLSchema}"
    minor = int(version.split(".")[1])
    for v in VERSIONS:
        vminor = int(v.split(".")[1])
        # 1.3 includes 1.2 and 1.4 includes 1.3: their element sets accumulate.
        if v == version or (minor >= 3 and 2 <= vminor <= minor):
            tree = etree.parse(str(xsd(_version_file(v))))
            names.update(el.get("name", "") for el in tree.getroot().iterchildren(f"{xs}element"))
    return frozenset(names)


def validate_message(xml_bytes: bytes, version: str) -> None:
    """Validate a serialized envelope (header elements + Body child) against the CWMP XSD.

    Raises AssertionError carrying the schema error log.
    """
    sch = schema(version)
    doc = etree.fromstring(xml_bytes, etree.XMLParser(no_network=True, resolve_entities=False))
    if not sch.validate(doc):
        errors = str(sch.error_log)
        raise AssertionError(f"CWMP {version} schema validation failed:\n{errors}")
    # libxml2 does not enforce fixed="1"/"0" on the boolean soap-env:mustUnderstand attribute.
    for el in doc.iterfind(f"{{{NS_SOAP_ENV}}}Header/*"):
        name = etree.QName(el).localname
        want = _MUST_UNDERSTAND.get(name)
        got = el.get(f"{{{NS_SOAP_ENV}}}mustUnderstand")
        if want is not None and got is not None and got != want:
            raise AssertionError(f"{name}: mustUnderstand must be {want!r}, got {got!r}")


_MUST_UNDERSTAND = {
    "ID": "1",
    "HoldRequests": "1",
    "SessionTimeout": "0",
    "SupportedCWMPVersions": "0",
    "UseCWMPVersion": "1",
}
