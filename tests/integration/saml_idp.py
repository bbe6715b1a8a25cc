# SPDX-License-Identifier: AGPL-3.0-or-later
"""A SAML 2.0 test IdP built on python3-lasso, plus lxml/xmlsec XML surgery.

lasso plays the IdP: it verifies the SP's signed AuthnRequest (HTTP-Redirect),
builds the Response and Assertion (subject, bearer confirmation, conditions,
audience, authn statement) and runs single logout. Every response then goes
through one pipeline, valid or not:

    lasso builds and signs
      -> lxml: every lasso signature stripped, times/audience/recipient/
         destination set from the options
      -> before_sign(ctx) hook            (attacks that must stay validly signed)
      -> sign assertion, encrypt it, sign response (xmlsec, per options)
      -> after_sign(ctx) hook             (XSW, tampering, comments, ...)
      -> xml_filter(bytes) hook           (DOCTYPE, CDATA: text surgery)
      -> base64 -> form {SAMLResponse, RelayState}

so an attack fixture differs from the valid one only by the attack.

Keys come from the openssl CLI (cached per process). Nothing here talks HTTP
to idbridge; saml_fixtures.py does.
"""

import atexit
import base64
import copy
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import lasso
import xmlsec
from lxml import etree

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
    "xs": "http://www.w3.org/2001/XMLSchema",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
B_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
B_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
ATTR_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
ATTR_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
ATTR_UNSPECIFIED = "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified"
CM_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
SCD_PATH = "saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData"
XMLENC_ELEMENT = "http://www.w3.org/2001/04/xmlenc#Element"
XMLENC_ENCRYPTED_KEY = "http://www.w3.org/2001/04/xmlenc#EncryptedKey"

SIG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SIG_RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"

_SIG_ALGS = {
    "rsa-sha256": xmlsec.Transform.RSA_SHA256,
    "rsa-sha384": xmlsec.Transform.RSA_SHA384,
    "rsa-sha512": xmlsec.Transform.RSA_SHA512,
    "rsa-sha1": xmlsec.Transform.RSA_SHA1,
}
_DIGESTS = {
    "sha256": xmlsec.Transform.SHA256,
    "sha384": xmlsec.Transform.SHA384,
    "sha512": xmlsec.Transform.SHA512,
    "sha1": xmlsec.Transform.SHA1,
}
_DEFAULT_DIGEST = {"rsa-sha256": "sha256", "rsa-sha384": "sha384",
                   "rsa-sha512": "sha512", "rsa-sha1": "sha1"}


def q(prefix, local):
    """Clark notation {ns}local for a prefix of NS."""
    return "{%s}%s" % (NS[prefix], local)


def iso(t):
    """Epoch seconds -> SAML dateTime (UTC, seconds precision)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def new_id():
    return "_" + secrets.token_hex(16)


# --------------------------------------------------------------------------
# Keys (openssl CLI, cached per process)


_KEY_DIR = None
_KEY_LOCK = threading.Lock()
_KEYS = {}


def _key_dir():
    global _KEY_DIR
    if _KEY_DIR is None:
        _KEY_DIR = tempfile.mkdtemp(prefix="idb-saml-keys-")
        atexit.register(shutil.rmtree, _KEY_DIR, True)
    return _KEY_DIR


class KeyPair:
    """An RSA-2048 key and its self-signed certificate (PEM files + text)."""

    def __init__(self, name, key_path, cert_path):
        self.name = name
        self.key_path = key_path
        self.cert_path = cert_path
        with open(key_path) as f:
            self.key_pem = f.read()
        with open(cert_path) as f:
            self.cert_pem = f.read()

    @property
    def cert_b64(self):
        """The certificate's base64 DER (for X509Certificate elements)."""
        return pem_body(self.cert_pem)

    def __repr__(self):
        return f"KeyPair({self.name!r})"


def pem_body(pem):
    lines = [ln.strip() for ln in pem.strip().splitlines()]
    return "".join(ln for ln in lines if ln and not ln.startswith("-----"))


def cert_pem_from_b64(b64):
    b64 = "".join(b64.split())
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def keypair(name):
    """The process-wide key pair called name (generated on first use)."""
    with _KEY_LOCK:
        kp = _KEYS.get(name)
        if kp is None:
            d = _key_dir()
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
            key_path = os.path.join(d, safe + "-key.pem")
            cert_path = os.path.join(d, safe + "-cert.pem")
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                 "-keyout", key_path, "-out", cert_path, "-days", "3650",
                 "-subj", f"/CN=idbridge test {safe}"],
                check=True, capture_output=True, timeout=60)
            kp = _KEYS[name] = KeyPair(name, key_path, cert_path)
        return kp


# --------------------------------------------------------------------------
# XML signature and encryption (python3-xmlsec on lxml trees)


def parse_xml(data):
    """lxml parse with no DTD, no entities, no network (our own documents)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             remove_blank_text=False, huge_tree=True)
    return etree.fromstring(data if isinstance(data, bytes) else data.encode(), parser)


def to_bytes(root):
    return etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def strip_signatures(elem):
    """Removes every ds:Signature below and including elem's children."""
    for sig in elem.findall(".//ds:Signature", NS):
        sig.getparent().remove(sig)


def sign_element(elem, key, cert=None, alg="rsa-sha256", digest=None, keyinfo="cert",
                 reference_id=None):
    """Puts an enveloped XML signature (exc-c14n, alg, digest) on elem, which
    must carry an ID attribute. The ds:Signature goes right after the
    element's saml:Issuer (the schema position), replacing a direct child
    signature that is already there.

    key: KeyPair that signs. cert: KeyPair whose certificate goes into
    KeyInfo (default: key's). keyinfo: "cert" (X509Data), "keyvalue" (raw RSA
    KeyValue), "both" or "none". reference_id: the ID the Reference points at
    (default elem's own; XSW fixtures point elsewhere). Returns the
    ds:Signature element."""
    cert = cert or key
    digest = digest or _DEFAULT_DIGEST[alg]
    for old in elem.findall("ds:Signature", NS):
        elem.remove(old)
    ident = reference_id or elem.get("ID")
    assert ident, f"{elem.tag} has no ID to sign"
    sig = xmlsec.template.create(elem, xmlsec.Transform.EXCL_C14N, _SIG_ALGS[alg], ns="ds")
    issuer = elem.find("saml:Issuer", NS)
    elem.insert(0 if issuer is None else list(elem).index(issuer) + 1, sig)
    ref = xmlsec.template.add_reference(sig, _DIGESTS[digest], uri="#" + ident)
    xmlsec.template.add_transform(ref, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(ref, xmlsec.Transform.EXCL_C14N)
    if keyinfo != "none":
        ki = xmlsec.template.ensure_key_info(sig)
        if keyinfo in ("keyvalue", "both"):
            xmlsec.template.add_key_value(ki)
        if keyinfo in ("cert", "both"):
            x509 = xmlsec.template.add_x509_data(ki)
            xmlsec.template.x509_data_add_certificate(x509)
    ctx = xmlsec.SignatureContext()
    k = xmlsec.Key.from_memory(key.key_pem, xmlsec.KeyFormat.PEM, None)
    if keyinfo in ("cert", "both"):
        k.load_cert_from_memory(cert.cert_pem, xmlsec.KeyFormat.PEM)
    ctx.key = k
    root = elem.getroottree().getroot()
    for node in root.iter():
        if isinstance(node.tag, str) and node.get("ID"):
            try:
                ctx.register_id(node, "ID")
            except xmlsec.Error:
                pass  # duplicate IDs in XSW fixtures: first one wins
    ctx.sign(sig)
    if keyinfo in ("cert", "both") and cert is not key:
        # xmlsec writes the signing key's certificate; put the requested one.
        # (iter + tag compare: find() misses nodes xmlsec made in C.)
        for c in sig.iter():
            if c.tag == q("ds", "X509Certificate"):
                c.text = cert.cert_b64
    return sig


def verify_element(elem, cert):
    """True when elem's direct ds:Signature verifies with cert (self-tests)."""
    sig = elem.find("ds:Signature", NS)
    if sig is None:
        return False
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(cert.cert_pem, xmlsec.KeyFormat.CERT_PEM, None)
    root = elem.getroottree().getroot()
    for node in root.iter():
        if isinstance(node.tag, str) and node.get("ID"):
            try:
                ctx.register_id(node, "ID")
            except xmlsec.Error:
                pass
    try:
        ctx.verify(sig)
        return True
    except xmlsec.Error:
        return False


def encrypt_assertion(assertion, sp_cert_pem, data_alg="aes256-cbc", key_alg="rsa-oaep"):
    """Replaces assertion (in its tree) by saml:EncryptedAssertion holding it
    encrypted for the SP certificate. Returns the EncryptedAssertion."""
    parent = assertion.getparent()
    idx = list(parent).index(assertion)
    # The plaintext is parsed on its own by the SP, so it must declare its
    # namespaces: encrypt a copy that is the root of a document of its own
    # (xmlsec serialises the node without the inherited declarations).
    parent.remove(assertion)
    assertion = parse_xml(etree.tostring(assertion))
    data_t = {"aes128-cbc": xmlsec.Transform.AES128, "aes256-cbc": xmlsec.Transform.AES256,
              "aes128-gcm": xmlsec.Transform.AES128_GCM,
              "aes256-gcm": xmlsec.Transform.AES256_GCM}[data_alg]
    bits = 128 if "128" in data_alg else 256
    key_t = {"rsa-oaep": xmlsec.Transform.RSA_OAEP, "rsa-1_5": xmlsec.Transform.RSA_PKCS1}[key_alg]
    enc_data = xmlsec.template.encrypted_data_create(
        assertion, data_t, type=xmlsec.EncryptionType.ELEMENT, ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(enc_data)
    ki = xmlsec.template.encrypted_data_ensure_key_info(enc_data, ns="ds")
    ek = xmlsec.template.add_encrypted_key(ki, key_t)
    xmlsec.template.encrypted_data_ensure_cipher_value(ek)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(sp_cert_pem, xmlsec.KeyFormat.CERT_PEM, None))
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(xmlsec.KeyData.AES, bits, xmlsec.KeyDataType.SESSION)
    enc = ctx.encrypt_xml(enc_data, assertion)  # replaces the assertion (root)
    wrapper = etree.Element(q("saml", "EncryptedAssertion"), nsmap={"saml": NS["saml"]})
    wrapper.append(enc)
    parent.insert(idx, wrapper)
    return wrapper


# --------------------------------------------------------------------------
# Metadata


def _keydesc(use, kp):
    return (f'<md:KeyDescriptor use="{use}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
            f'{kp.cert_b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>')


def idp_metadata(entity_id, signing_keys, sso_url, slo_url=None, want_authn_signed=True,
                 valid_until=None, cache_duration=None):
    """IdP EntityDescriptor: one signing KeyDescriptor per key, SSO (and SLO)
    over HTTP-Redirect."""
    attrs = ""
    if valid_until:
        attrs += f' validUntil="{valid_until}"'
    if cache_duration:
        attrs += f' cacheDuration="{cache_duration}"'
    slo = (f'<md:SingleLogoutService Binding="{B_REDIRECT}" Location="{slo_url}"/>'
           if slo_url else "")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<md:EntityDescriptor xmlns:md="{NS["md"]}" xmlns:ds="{NS["ds"]}" '
        f'entityID="{entity_id}"{attrs}>'
        f'<md:IDPSSODescriptor WantAuthnRequestsSigned="{str(bool(want_authn_signed)).lower()}" '
        f'protocolSupportEnumeration="{PROTOCOL}">'
        + "".join(_keydesc("signing", k) for k in signing_keys)
        + slo
        + f'<md:NameIDFormat>{NAMEID_PERSISTENT}</md:NameIDFormat>'
        f'<md:NameIDFormat>{NAMEID_EMAIL}</md:NameIDFormat>'
        f'<md:SingleSignOnService Binding="{B_REDIRECT}" Location="{sso_url}"/>'
        f'</md:IDPSSODescriptor></md:EntityDescriptor>\n')


class SPInfo:
    """What the IdP needs from SP metadata (parsed with lxml)."""

    def __init__(self, xml):
        self.xml = xml if isinstance(xml, str) else xml.decode()
        root = parse_xml(self.xml)
        if root.tag == q("md", "EntitiesDescriptor"):
            root = root.find("md:EntityDescriptor", NS)
        assert root is not None and root.tag == q("md", "EntityDescriptor"), self.xml[:200]
        self.entity_id = root.get("entityID")
        spsso = root.find("md:SPSSODescriptor", NS)
        assert spsso is not None, "no SPSSODescriptor in SP metadata"
        self.acs = [(a.get("Binding"), a.get("Location"), a.get("index"), a.get("isDefault"))
                    for a in spsso.findall("md:AssertionConsumerService", NS)]
        self.slo = [(s.get("Binding"), s.get("Location"))
                    for s in spsso.findall("md:SingleLogoutService", NS)]
        self.certs = {}
        for kd in spsso.findall("md:KeyDescriptor", NS):
            use = kd.get("use") or "any"
            c = kd.find(".//ds:X509Certificate", NS)
            if c is not None:
                self.certs.setdefault(use, []).append(cert_pem_from_b64(c.text))
        self.authn_requests_signed = spsso.get("AuthnRequestsSigned")
        self.want_assertions_signed = spsso.get("WantAssertionsSigned")

    @property
    def acs_url(self):
        post = [a for a in self.acs if a[0] == B_POST]
        assert post, f"SP metadata has no HTTP-POST ACS: {self.acs}"
        default = [a for a in post if a[3] == "true"]
        return (default or post)[0][1]

    @property
    def slo_url(self):
        red = [s for s in self.slo if s[0] == B_REDIRECT]
        return red[0][1] if red else None

    @property
    def encryption_cert(self):
        certs = self.certs.get("encryption") or self.certs.get("any") or []
        return certs[0] if certs else None

    @property
    def signing_cert(self):
        certs = self.certs.get("signing") or self.certs.get("any") or []
        return certs[0] if certs else None


# --------------------------------------------------------------------------
# Responses


class SamlPost:
    """An HTTP-POST binding message: where to post it and the form."""

    def __init__(self, url, xml, relay_state, field="SAMLResponse", **info):
        self.url = url
        self.xml = xml  # bytes, exactly what is base64-encoded
        self.relay_state = relay_state
        self.field = field
        self.info = info  # assertion_id, response_id, in_response_to, nameid, session_index

    def __getattr__(self, name):
        try:
            return self.__dict__["info"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def form(self):
        f = {self.field: base64.b64encode(self.xml).decode()}
        if self.relay_state is not None:
            f["RelayState"] = self.relay_state
        return f

    @property
    def acs_path(self):
        u = urllib.parse.urlsplit(self.url)
        return u.path

    def with_xml(self, xml):
        return SamlPost(self.url, xml, self.relay_state, self.field, **self.info)

    def text(self):
        return self.xml.decode("utf-8", "replace")


class BuildContext:
    """Handed to the before_sign / after_sign hooks."""

    def __init__(self, idp, sp, root, opts):
        self.idp = idp
        self.sp = sp
        self.root = root
        self.opts = opts

    @property
    def response(self):
        return self.root

    @property
    def assertion(self):
        return self.root.find("saml:Assertion", NS)

    def assertions(self):
        return self.root.findall(".//saml:Assertion", NS)

    def find(self, path, elem=None):
        return (self.root if elem is None else elem).find(path, NS)

    def findall(self, path, elem=None):
        return (self.root if elem is None else elem).findall(path, NS)

    def nameid(self, assertion=None):
        return (assertion if assertion is not None else self.assertion).find(
            "saml:Subject/saml:NameID", NS)

    def attribute(self, name, assertion=None):
        a = assertion if assertion is not None else self.assertion
        for attr in a.findall("saml:AttributeStatement/saml:Attribute", NS):
            if attr.get("Name") == name:
                return attr
        return None

    def attribute_values(self, name, assertion=None):
        attr = self.attribute(name, assertion)
        return [] if attr is None else attr.findall("saml:AttributeValue", NS)

    def remove(self, path, elem=None):
        """Removes every node matching path; returns how many."""
        nodes = self.findall(path, elem)
        for n in nodes:
            n.getparent().remove(n)
        return len(nodes)

    def sign(self, elem, key=None, **kw):
        """sign_element with the IdP's signing key (or key), opts' algorithm."""
        kw.setdefault("alg", self.opts["sig_alg"])
        kw.setdefault("digest", self.opts["digest_alg"])
        return sign_element(elem, key or self.opts["signing_key"], **kw)

    def forged_assertion(self, nameid=None, attributes=None, fresh_id=True):
        """A deep copy of the (signed) assertion, signature removed, NameID and
        attribute values replaced: the attacker's unsigned assertion."""
        forged = copy.deepcopy(self.assertion)
        strip_signatures(forged)
        if fresh_id:
            forged.set("ID", new_id())
        if nameid is not None:
            forged.find("saml:Subject/saml:NameID", NS).text = nameid
        for name, values in (attributes or {}).items():
            attr = None
            for a in forged.findall("saml:AttributeStatement/saml:Attribute", NS):
                if a.get("Name") == name:
                    attr = a
            assert attr is not None, f"no attribute {name} to forge"
            for v in attr.findall("saml:AttributeValue", NS):
                attr.remove(v)
            for v in values:
                _append_value(attr, v)
        return forged


def _append_value(attr_elem, value):
    v = etree.SubElement(attr_elem, q("saml", "AttributeValue"))
    v.text = value
    return v


# The options of LassoIdP.sp_initiated / idp_initiated (keyword arguments).
DEFAULTS = dict(
    # signatures
    sign_response=True, sign_assertion=True,
    signing_key=None,          # KeyPair; default: the IdP's active key
    keyinfo_cert=None,         # KeyPair whose cert goes into KeyInfo (default signer's)
    keyinfo="cert",            # cert | keyvalue | both | none
    sig_alg="rsa-sha256", digest_alg=None,
    encrypt=False, encrypt_data_alg="aes256-cbc", encrypt_key_alg="rsa-oaep",
    # times, offsets in seconds from now
    issue_instant=0, authn_instant=-5, not_before=-60, not_on_or_after=300,
    scd_not_on_or_after=None,  # default: not_on_or_after
    session_not_on_or_after=3600,
    # addressing; None = the correct value; "" = attribute removed
    audience=None, recipient=None, destination=None, in_response_to=None,
    issuer=None,
    nameid_format=NAMEID_PERSISTENT, session_index=None,
    attr_name_format=ATTR_BASIC,
    status="urn:oasis:names:tc:SAML:2.0:status:Success",
    relay_state=None,
    # hooks
    before_sign=None, after_sign=None, xml_filter=None,
)


def _normalise_attrs(attrs, default_format):
    """{name: [values]} or [(name, [values]) | (name, [values], nameformat)]
    -> [(name, [values], nameformat)]."""
    out = []
    items = attrs.items() if isinstance(attrs, dict) else attrs
    for item in items:
        if len(item) == 2:
            name, values = item
            fmt = default_format
        else:
            name, values, fmt = item
        if isinstance(values, str):
            values = [values]
        out.append((name, list(values), fmt))
    return out


def _lasso_attr(name, values, fmt):
    a = lasso.Saml2Attribute()
    a.name = name
    if fmt:
        a.nameFormat = fmt
    vals = []
    for v in values:
        av = lasso.Saml2AttributeValue()
        tn = lasso.MiscTextNode()
        tn.content = v
        tn.textChild = True
        av.any = (tn,)
        vals.append(av)
    a.attributeValue = tuple(vals)
    return a


class LassoIdP:
    """A SAML IdP: python3-lasso for the protocol, xmlsec for the signatures.

    keys: its signing KeyPairs (all published in the metadata; keys[active]
    signs). entity_id / urls are fake (nothing listens there): the test reads
    the redirect the SP answers and calls the IdP directly.
    """

    def __init__(self, name=None, keys=None, entity_id=None, slo=True, active=0):
        self.name = name or ("idp-" + secrets.token_hex(4))
        self.keys = list(keys) if keys else [keypair(self.name + "-signing")]
        self.active = active
        self.entity_id = entity_id or f"https://{self.name}.idp.example.test/saml/metadata"
        base = self.entity_id.rsplit("/", 1)[0]
        self.sso_url = base + "/sso"
        self.slo_url = base + "/slo" if slo else None
        self.sps = {}           # entity id -> SPInfo
        self.sessions = {}      # nameid -> lasso session dump
        self._server = None

    # --- metadata and SPs

    @property
    def signing_key(self):
        return self.keys[self.active]

    def metadata(self, keys=None, **kw):
        return idp_metadata(self.entity_id, keys or self.keys, self.sso_url, self.slo_url, **kw)

    def add_sp(self, sp_metadata_xml):
        sp = SPInfo(sp_metadata_xml)
        self.sps[sp.entity_id] = sp
        self._server = None
        return sp

    def server(self):
        """The lasso.Server (rebuilt when SPs change)."""
        if self._server is None:
            key = self.signing_key
            srv = lasso.Server.newFromBuffers(self.metadata(), key.key_pem, None, key.cert_pem)
            srv.signatureMethod = lasso.SIGNATURE_METHOD_RSA_SHA256
            for sp in self.sps.values():
                srv.addProviderFromBuffer(lasso.PROVIDER_ROLE_SP, sp.xml, None, None)
            self._server = srv
        return self._server

    # --- SSO

    def sp_initiated(self, authn_redirect_url, nameid, attrs=None, **opts):
        """Processes the SP's AuthnRequest (the Location of its redirect: the
        query carries SAMLRequest, RelayState, SigAlg, Signature, checked by
        lasso) and answers it. Returns a SamlPost for the ACS."""
        query = urllib.parse.urlsplit(authn_redirect_url).query
        assert "SAMLRequest=" in query, f"not an AuthnRequest redirect: {authn_redirect_url}"
        login = lasso.Login(self.server())
        login.processAuthnRequestMsg(query)  # raises on a bad SP signature
        relay = login.msgRelayState
        return self._answer(login, nameid, attrs, relay, solicited=True, **opts)

    def idp_initiated(self, sp_entity_id, nameid, attrs=None, relay_state=None, **opts):
        """An unsolicited Response for sp_entity_id."""
        login = lasso.Login(self.server())
        login.initIdpInitiatedAuthnRequest(sp_entity_id)
        login.request.protocolBinding = lasso.SAML2_METADATA_BINDING_POST
        login.request.nameIdPolicy.format = opts.get("nameid_format", NAMEID_PERSISTENT)
        login.request.nameIdPolicy.allowCreate = True
        login.processAuthnRequestMsg(None)
        return self._answer(login, nameid, attrs, relay_state, solicited=False, **opts)

    def parse_authn_request(self, authn_redirect_url):
        """The AuthnRequest XML of an SP redirect (for assertions on it)."""
        qs = urllib.parse.parse_qs(urllib.parse.urlsplit(authn_redirect_url).query)
        raw = base64.b64decode(qs["SAMLRequest"][0])
        return parse_xml(zlib.decompress(raw, -15)), qs

    def _answer(self, login, nameid, attrs, relay, solicited, **opts):
        unknown = set(opts) - set(DEFAULTS)
        assert not unknown, f"unknown response options {unknown}"
        o = dict(DEFAULTS)
        o.update(opts)
        o["signing_key"] = o["signing_key"] or self.signing_key
        o["digest_alg"] = o["digest_alg"] or _DEFAULT_DIGEST[o["sig_alg"]]
        if o["scd_not_on_or_after"] is None:
            o["scd_not_on_or_after"] = o["not_on_or_after"]
        if o["relay_state"] is not None:
            relay = o["relay_state"]

        login.validateRequestMsg(True, True)
        now = time.time()
        login.buildAssertion(lasso.SAML2_AUTHN_CONTEXT_PASSWORD_PROTECTED_TRANSPORT,
                             iso(now + o["authn_instant"]), None,
                             iso(now + o["not_before"]), iso(now + o["not_on_or_after"]))
        a = login.response.assertion[0]
        a.subject.nameID.content = nameid
        a.subject.nameID.format = o["nameid_format"]
        if o["session_index"] is not None and a.authnStatement:
            # in lasso's own session too, so that SLO names the same index
            a.authnStatement[0].sessionIndex = o["session_index"]
        if attrs:
            st = lasso.Saml2AttributeStatement()
            st.attribute = tuple(_lasso_attr(n, v, f) for n, v, f in
                                 _normalise_attrs(attrs, o["attr_name_format"]))
            a.attributeStatement = (st,)
        login.buildAuthnResponseMsg()
        acs_url = login.msgUrl
        sp = self.sps[login.remoteProviderId]
        session_dump = login.session.dump() if login.session else None

        root = parse_xml(base64.b64decode(login.msgBody))
        strip_signatures(root)
        ctx = BuildContext(self, sp, root, o)
        assertion = ctx.assertion
        if session_dump:
            self.sessions[nameid] = session_dump

        # --- the options: everything lasso put there, set explicitly
        def set_or_drop(elem, attr, value):
            if elem is None:
                return
            if value == "":
                elem.attrib.pop(attr, None)
            else:
                elem.set(attr, value)

        set_or_drop(root, "IssueInstant", iso(now + o["issue_instant"]))
        set_or_drop(assertion, "IssueInstant", iso(now + o["issue_instant"]))
        set_or_drop(root, "Destination", acs_url if o["destination"] is None else o["destination"])
        irt = o["in_response_to"]
        if irt is not None:
            set_or_drop(root, "InResponseTo", irt)
            set_or_drop(ctx.find(SCD_PATH, assertion), "InResponseTo", irt)
        if o["issuer"] is not None:
            for iss in root.iter(q("saml", "Issuer")):
                iss.text = o["issuer"]
        scd = ctx.find(SCD_PATH, assertion)
        set_or_drop(scd, "Recipient", acs_url if o["recipient"] is None else o["recipient"])
        set_or_drop(scd, "NotOnOrAfter", iso(now + o["scd_not_on_or_after"]))
        cond = ctx.find("saml:Conditions", assertion)
        set_or_drop(cond, "NotBefore", iso(now + o["not_before"]))
        set_or_drop(cond, "NotOnOrAfter", iso(now + o["not_on_or_after"]))
        if o["audience"] is not None:
            auds = o["audience"] if isinstance(o["audience"], (list, tuple)) else [o["audience"]]
            ar = ctx.find("saml:Conditions/saml:AudienceRestriction", assertion)
            for old in ar.findall("saml:Audience", NS):
                ar.remove(old)
            for aud in auds:
                etree.SubElement(ar, q("saml", "Audience")).text = aud
        authn = ctx.find("saml:AuthnStatement", assertion)
        if authn is not None:
            set_or_drop(authn, "AuthnInstant", iso(now + o["authn_instant"]))
            if o["session_not_on_or_after"] is not None:
                authn.set("SessionNotOnOrAfter", iso(now + o["session_not_on_or_after"]))
            if o["session_index"] is not None:
                authn.set("SessionIndex", o["session_index"])
        status = ctx.find("samlp:Status/samlp:StatusCode")
        if status is not None:
            status.set("Value", o["status"])

        info = dict(assertion_id=assertion.get("ID"), response_id=root.get("ID"),
                    in_response_to=root.get("InResponseTo"), nameid=nameid,
                    session_index=authn.get("SessionIndex") if authn is not None else None,
                    acs_url=acs_url, sp_entity_id=sp.entity_id, solicited=solicited)

        if o["before_sign"]:
            o["before_sign"](ctx)
        assertion = ctx.assertion
        if o["sign_assertion"] and assertion is not None:
            sign_element(assertion, o["signing_key"], cert=o["keyinfo_cert"], alg=o["sig_alg"],
                         digest=o["digest_alg"], keyinfo=o["keyinfo"])
        if o["encrypt"] and assertion is not None:
            assert sp.encryption_cert, "SP metadata has no encryption certificate"
            encrypt_assertion(assertion, sp.encryption_cert, o["encrypt_data_alg"],
                              o["encrypt_key_alg"])
        if o["sign_response"]:
            sign_element(root, o["signing_key"], cert=o["keyinfo_cert"], alg=o["sig_alg"],
                         digest=o["digest_alg"], keyinfo=o["keyinfo"])
        # Nodes xmlsec created in C are invisible to lxml's find() (their
        # names are not in the document's dictionary): hooks get a re-parsed
        # tree. Serialising does not change what the signatures cover.
        ctx.root = parse_xml(to_bytes(ctx.root))
        if o["after_sign"]:
            o["after_sign"](ctx)
        xml = to_bytes(ctx.root)
        if o["xml_filter"]:
            xml = o["xml_filter"](xml)
        return SamlPost(acs_url, xml, relay, **info)

    # --- single logout

    def logout_request(self, sp_entity_id, nameid, relay_state=None):
        """IdP-initiated SLO: the URL of the SP's SLO endpoint carrying a
        signed LogoutRequest (HTTP-Redirect) for nameid's session."""
        dump = self.sessions[nameid]
        lo = lasso.Logout(self.server())
        lo.setSessionFromDump(dump)
        lo.initRequest(sp_entity_id, lasso.HTTP_METHOD_REDIRECT)
        if relay_state:
            lo.msgRelayState = relay_state
        lo.buildRequestMsg()
        self._pending_logout = lo
        return lo.msgUrl

    def process_logout_response(self, redirect_url):
        """Checks the SP's LogoutResponse (redirect Location) to the request
        made by logout_request; raises lasso.Error on a bad one."""
        lo = self._pending_logout
        lo.processResponseMsg(urllib.parse.urlsplit(redirect_url).query)
        return lo

    def answer_logout(self, redirect_url, nameid=None):
        """SP-initiated SLO: verifies the SP's LogoutRequest (the Location of
        its redirect to our SLO URL) and returns the URL of the SP's SLO
        endpoint with our signed LogoutResponse."""
        query = urllib.parse.urlsplit(redirect_url).query
        lo = lasso.Logout(self.server())
        lo.processRequestMsg(query)
        name = nameid or lo.nameIdentifier.content
        if name in self.sessions:
            lo.setSessionFromDump(self.sessions[name])
        try:
            lo.validateRequest()
        except lasso.Error:
            pass  # unknown session: answer anyway (lasso sets a status)
        lo.buildResponseMsg()
        self.last_logout_request = lo
        return lo.msgUrl


# --------------------------------------------------------------------------
# XML surgery used by the attack tests


def insert_doctype(xml, doctype):
    """xml with a DOCTYPE (and internal subset) in front of the root."""
    return doctype.encode() + b"\n" + xml


def replace_once(xml, old, new):
    old = old.encode() if isinstance(old, str) else old
    new = new.encode() if isinstance(new, str) else new
    assert xml.count(old) >= 1, f"{old!r} not found in the response"
    return xml.replace(old, new, 1)


def replace_all(xml, old, new):
    old = old.encode() if isinstance(old, str) else old
    new = new.encode() if isinstance(new, str) else new
    assert xml.count(old) >= 1, f"{old!r} not found in the response"
    return xml.replace(old, new)


# --------------------------------------------------------------------------
# A tiny HTTP server that records every request (outbound-fetch canary)


class Canary:
    """Listens on 127.0.0.1:<free port>; records each request it receives and
    answers 200 with body (default: a harmless payload)."""

    def __init__(self, body=b"canary"):
        self.requests = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                canary.requests.append((self.command, self.path, dict(self.headers)))
                payload = canary.body
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = _any

            def log_message(self, *a):
                pass

        self.body = body
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class MetadataServer(Canary):
    """Serves IdP metadata at /metadata (text replaceable at run time)."""

    def __init__(self, text):
        super().__init__(body=text.encode())

    def set(self, text):
        self.body = text.encode()
