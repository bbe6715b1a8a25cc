# SPDX-License-Identifier: AGPL-3.0-or-later
"""A second, independent SAML IdP: Debian's python3-pysaml2 (saml2.server).

It answers the SP's AuthnRequest (HTTP-Redirect) with a Response built and
signed by pysaml2 itself (xmlsec1 binary, RSA-SHA256), so idbridge is tested
against XML it did not shape with our own lasso helper.

    idp = Pysaml2IdP(tmp_dir)
    conn = create_connection(..., metadata=idp.metadata())
    idp.add_sp(sp_metadata_xml)
    post = idp.sp_initiated(redirect_location, "alice", {"email": [...], ...})
    daemon.post(post.acs_path, data=post.form)
"""

import base64
import os
import secrets
import urllib.parse
import warnings
import zlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

with warnings.catch_warnings():
    # Debian's pysaml2 7.0.1 uses importlib.resources APIs Python 3.11 deprecates.
    warnings.simplefilter("ignore", DeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
    from saml2.server import Server

from saml_idp import SamlPost, SPInfo, idp_metadata, keypair

XMLSEC1 = "/usr/bin/xmlsec1"
# Attribute names pysaml2 emits for the identity keys "mail", "displayName"
# and "memberOf" (configure the connection's jit attribute names with these).
MAIL_OID = "urn:oid:0.9.2342.19200300.100.1.3"
DISPLAYNAME_OID = "urn:oid:2.16.840.1.113730.3.1.241"
GROUPS_NAME = "memberOf"
JIT_ATTRIBUTES = {"email_attribute": MAIL_OID, "name_attribute": DISPLAYNAME_OID,
                  "group_attribute": GROUPS_NAME}
_SIGALG_HASH = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": hashes.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512,
}


def verify_redirect_query(query, cert_pem):
    """Checks the HTTP-Redirect binding signature of a raw query string over
    the URL-encoded values exactly as sent (SAML bindings §3.4.4.1). Refuses
    SHA-1. Returns the decoded parameters."""
    parts = {}
    order = []
    for piece in query.split("&"):
        k, _, v = piece.partition("=")
        parts[k] = v
        order.append(k)
    kind = "SAMLRequest" if "SAMLRequest" in parts else "SAMLResponse"
    for needed in (kind, "SigAlg", "Signature"):
        assert needed in parts, f"redirect without {needed}: {query[:200]}"
    signed = "&".join(f"{k}={parts[k]}" for k in (kind, "RelayState", "SigAlg") if k in parts)
    sigalg = urllib.parse.unquote_plus(parts["SigAlg"])
    assert sigalg in _SIGALG_HASH, f"SP signed its request with {sigalg}"
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        cert.public_key().verify(base64.b64decode(urllib.parse.unquote_plus(parts["Signature"])),
                                 signed.encode(), padding.PKCS1v15(), _SIGALG_HASH[sigalg]())
    except InvalidSignature:
        raise AssertionError("the SP's AuthnRequest signature does not verify") from None
    return {k: urllib.parse.unquote_plus(v) for k, v in parts.items()}


class Pysaml2IdP:
    def __init__(self, workdir, name=None):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.name = name or ("pysaml2-" + secrets.token_hex(4))
        self.key = keypair(self.name + "-signing")
        self.entity_id = f"https://{self.name}.idp.example.test/idp/metadata"
        base = self.entity_id.rsplit("/", 1)[0]
        self.sso_url = base + "/sso/redirect"
        self.slo_url = base + "/slo/redirect"
        self.sps = {}
        self._server = None

    def metadata(self):
        # Hand-written: pysaml2's own metadata generator needs more config
        # than the test needs; the content is what pysaml2 serves.
        return idp_metadata(self.entity_id, [self.key], self.sso_url, self.slo_url)

    def add_sp(self, sp_metadata_xml):
        sp = SPInfo(sp_metadata_xml)
        self.sps[sp.entity_id] = sp
        self._server = None
        return sp

    def server(self):
        if self._server is None:
            conf = {
                "entityid": self.entity_id,
                "key_file": self.key.key_path,
                "cert_file": self.key.cert_path,
                "xmlsec_binary": XMLSEC1,
                "metadata": {"inline": [sp.xml for sp in self.sps.values()]},
                "service": {
                    "idp": {
                        "endpoints": {
                            "single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)],
                            "single_logout_service": [(self.slo_url, BINDING_HTTP_REDIRECT)],
                        },
                        "policy": {
                            "default": {
                                "lifetime": {"minutes": 5},
                                "attribute_restrictions": None,
                                # pysaml2's saml_uri converter: mail and
                                # displayName go out as urn:oid names (as
                                # Shibboleth-style IdPs send them), memberOf
                                # (no OID in its map) under its own name.
                                "name_form": "urn:oasis:names:tc:SAML:2.0:attrname-format:uri",
                            },
                        },
                        "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                        "want_authn_requests_signed": False,  # checked on the raw query
                        "sign_response": True,
                        "sign_assertion": True,
                    },
                },
                "signing_algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "digest_algorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
                "accepted_time_diff": 60,
                "allow_unknown_attributes": True,
                "debug": False,
            }
            cfg = IdPConfig()
            cfg.load(conf)
            self._server = Server(config=cfg)
        return self._server

    def sp_initiated(self, authn_redirect_url, nameid, identity, sign_response=True,
                     sign_assertion=True):
        """Answers the AuthnRequest in authn_redirect_url (its signature is
        checked against the SP metadata's signing certificate). identity:
        {attribute name: [values]}. Returns a SamlPost for the ACS."""
        query = urllib.parse.urlsplit(authn_redirect_url).query
        srv = self.server()
        req_xml = zlib.decompress(base64.b64decode(urllib.parse.unquote_plus(
            dict(p.split("=", 1) for p in query.split("&"))["SAMLRequest"])), -15)
        # Which SP sent it decides the certificate the signature must match.
        issuer = _issuer_of(req_xml)
        sp = self.sps[issuer]
        params = verify_redirect_query(query, sp.signing_cert)
        req = srv.parse_authn_request(params["SAMLRequest"], BINDING_HTTP_REDIRECT)
        resp_args = srv.response_args(req.message, [BINDING_HTTP_POST])
        name_id = NameID(format=NAMEID_FORMAT_PERSISTENT, text=nameid,
                         name_qualifier=self.entity_id, sp_name_qualifier=sp.entity_id)
        response = srv.create_authn_response(
            identity, userid=nameid, name_id=name_id,
            authn={"class_ref":
                   "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
            sign_response=sign_response, sign_assertion=sign_assertion,
            sign_alg="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            digest_alg="http://www.w3.org/2001/04/xmlenc#sha256",
            **resp_args)
        xml = str(response).encode() if not isinstance(response, bytes) else response
        return SamlPost(resp_args["destination"], xml, params.get("RelayState"),
                        in_response_to=resp_args["in_response_to"], nameid=nameid,
                        sp_entity_id=sp.entity_id, acs_url=resp_args["destination"])


def _issuer_of(req_xml):
    from saml_idp import NS, parse_xml
    root = parse_xml(req_xml)
    iss = root.find("saml:Issuer", NS)
    assert iss is not None, "AuthnRequest without Issuer"
    return iss.text.strip()
