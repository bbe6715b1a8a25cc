#!/usr/bin/python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""SAML fixtures for tests/bench/saml_acs.sh: python3-lasso plays the IdP.

Run it with /usr/bin/python3 (Debian's python3-lasso loads only there).

  saml_gen.py idp-metadata DIR
      DIR/idp-cert.pem (made by the caller with openssl) -> DIR/idp-metadata.xml
      (entityID https://idp.bench.test/saml, one signing key, SSO over Redirect).

  saml_gen.py bodies --dir DIR --sp-metadata FILE --out FILE --prefix P
                     --users U --count N [--first K] [--validity S] [--jobs J]
      N complete application/x-www-form-urlencoded POST bodies, one a line,
      "SAMLResponse=<b64>&RelayState=%2F": IdP-initiated (no InResponseTo)
      Responses built and signed (RSA-SHA256, Response and Assertion) by
      lasso with DIR/idp-key.pem, each with its own Response and Assertion ID.
      Body k is for user number K + (k mod U):
        NameID (persistent)  P-<number>
        email                P<number>@bench.test   (single value)
        displayName          Bench User P<number>
        memberOf             g1 g2 g3
      Destination = Recipient = the SP's HTTP-POST ACS, Audience = the SP's
      entityID (both read from the SP metadata), NotBefore now-60 s,
      NotOnOrAfter (Conditions and SubjectConfirmationData) now+S (default
      10800), bearer SubjectConfirmation, AuthnStatement with a SessionIndex.
      J worker processes (default: number of cores) each build a slice.

  saml_gen.py check FILE
      Decodes the first body of FILE and prints what the SP will look at
      (a self-test of the fixtures).
"""

import argparse
import base64
import os
import re
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET

IDP_ENTITY = "https://idp.bench.test/saml"
PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
B_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
B_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
ATTR_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
GROUPS = ("g1", "g2", "g3")


def pem_body(path):
    with open(path) as f:
        lines = [ln.strip() for ln in f.read().strip().splitlines()]
    return "".join(ln for ln in lines if ln and not ln.startswith("-----"))


def idp_metadata(d):
    cert = pem_body(os.path.join(d, "idp-cert.pem"))
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           '<md:EntityDescriptor xmlns:md="%s" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
           'entityID="%s"><md:IDPSSODescriptor WantAuthnRequestsSigned="false" '
           'protocolSupportEnumeration="%s"><md:KeyDescriptor use="signing"><ds:KeyInfo>'
           '<ds:X509Data><ds:X509Certificate>%s</ds:X509Certificate></ds:X509Data></ds:KeyInfo>'
           '</md:KeyDescriptor><md:NameIDFormat>%s</md:NameIDFormat>'
           '<md:SingleSignOnService Binding="%s" Location="https://idp.bench.test/sso"/>'
           '</md:IDPSSODescriptor></md:EntityDescriptor>\n'
           % (MD, IDP_ENTITY, PROTOCOL, cert, PERSISTENT, B_REDIRECT))
    with open(os.path.join(d, "idp-metadata.xml"), "w") as f:
        f.write(xml)


def sp_info(path):
    root = ET.parse(path).getroot()
    if root.tag == "{%s}EntitiesDescriptor" % MD:
        root = root.find("{%s}EntityDescriptor" % MD)
    entity = root.get("entityID")
    acs = None
    for a in root.iter("{%s}AssertionConsumerService" % MD):
        if a.get("Binding") == B_POST and (acs is None or a.get("isDefault") == "true"):
            acs = a.get("Location")
    if not entity or not acs:
        raise SystemExit("saml_gen: %s has no entityID or no HTTP-POST ACS" % path)
    return entity, acs


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def attribute(lasso, name, values):
    a = lasso.Saml2Attribute()
    a.name = name
    a.nameFormat = ATTR_BASIC
    vals = []
    for v in values:
        # newWithString + textChild: serialised as plain text (without
        # textChild Debian's lasso writes <XXX>v</XXX>, which idbridge refuses)
        n = lasso.MiscTextNode.newWithString(v)
        n.textChild = True
        av = lasso.Saml2AttributeValue()
        av.any = (n,)
        vals.append(av)
    a.attributeValue = tuple(vals)
    return a


def build_slice(args, lo, hi, path):
    """Bodies lo..hi-1 into path (runs in a worker process)."""
    import lasso  # noqa: PLC0415 - imported after fork, one Server per process

    d = args.dir
    server = lasso.Server(os.path.join(d, "idp-metadata.xml"), os.path.join(d, "idp-key.pem"),
                          None, os.path.join(d, "idp-cert.pem"))
    server.signatureMethod = lasso.SIGNATURE_METHOD_RSA_SHA256
    server.addProvider(lasso.PROVIDER_ROLE_SP, args.sp_metadata, None, None)
    sp_entity, acs = sp_info(args.sp_metadata)
    now = int(time.time())
    nb, noa = iso(now - 60), iso(now + args.validity)
    with open(path, "w") as out:
        for k in range(lo, hi):
            num = args.first + (k % args.users)
            tag = "%s%06d" % (args.prefix, num)
            login = lasso.Login(server)
            login.initIdpInitiatedAuthnRequest(sp_entity)
            login.request.nameIdPolicy.format = TRANSIENT
            login.request.nameIdPolicy.allowCreate = True
            login.request.protocolBinding = B_POST
            login.processAuthnRequestMsg(None)
            login.validateRequestMsg(True, True)
            login.buildAssertion(lasso.SAML2_AUTHN_CONTEXT_PASSWORD_PROTECTED_TRANSPORT,
                                 iso(now - 5), None, nb, noa)
            a = login.assertion
            nid = a.subject.nameID
            nid.format = PERSISTENT
            nid.content = "%s-%06d" % (args.prefix, num)
            nid.nameQualifier = None
            nid.sPNameQualifier = None
            scd = a.subject.subjectConfirmation.subjectConfirmationData
            scd.recipient = acs
            scd.notOnOrAfter = noa
            scd.inResponseTo = None
            a.authnStatement[0].sessionIndex = a.iD
            st = lasso.Saml2AttributeStatement()
            st.attribute = (attribute(lasso, "email", [tag + "@bench.test"]),
                            attribute(lasso, "displayName", ["Bench User " + tag]),
                            attribute(lasso, "memberOf", list(GROUPS)))
            a.attributeStatement = (st,)
            login.buildAuthnResponseMsg()
            if login.msgUrl != acs:
                raise SystemExit("saml_gen: lasso posts to %s, not the ACS %s" % (login.msgUrl, acs))
            # base64 needs only + / = escaped (urlencode is slow on 8 KB)
            b64 = login.msgBody.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
            out.write("SAMLResponse=" + b64 + "&RelayState=%2F\n")


def bodies(args):
    t0 = time.time()
    jobs = max(1, min(args.jobs, args.count))
    step = (args.count + jobs - 1) // jobs
    parts, pids = [], []
    for j in range(jobs):
        lo, hi = j * step, min(args.count, (j + 1) * step)
        if lo >= hi:
            break
        part = "%s.part%d" % (args.out, j)
        parts.append(part)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                build_slice(args, lo, hi, part)
            except BaseException as exc:  # noqa: BLE001 - report and exit non-zero
                print("saml_gen worker %d: %r" % (j, exc), file=sys.stderr)
                code = 1
            os._exit(code)
        pids.append(pid)
    bad = 0
    for pid in pids:
        _, st = os.waitpid(pid, 0)
        bad += st != 0
    if bad:
        for p in parts:
            if os.path.exists(p):
                os.unlink(p)
        raise SystemExit("saml_gen: %d worker(s) failed" % bad)
    ids = set()
    n = 0
    with open(args.out + ".tmp", "w") as out:
        for p in parts:
            with open(p) as f:
                for line in f:
                    xml = base64.b64decode(urllib.parse.parse_qs(line.strip())["SAMLResponse"][0])
                    m = re.search(rb'<saml:Assertion[^>]* ID="([^"]+)"', xml)
                    if not m or m.group(1) in ids:
                        raise SystemExit("saml_gen: missing or duplicate Assertion ID in body %d" % n)
                    ids.add(m.group(1))
                    out.write(line)
                    n += 1
            os.unlink(p)
    os.rename(args.out + ".tmp", args.out)
    dt = time.time() - t0
    print("saml_gen: %d bodies (%s, users %d..%d) in %.1f s (%.0f/s, %d procs), ~%d bytes each"
          % (n, args.prefix, args.first, args.first + min(args.users, args.count) - 1, dt,
             n / dt if dt else 0, jobs, len(line)))


def check(path):
    with open(path) as f:
        line = f.readline().strip()
    form = urllib.parse.parse_qs(line)
    xml = base64.b64decode(form["SAMLResponse"][0]).decode()
    sigs = re.findall(r'SignatureMethod Algorithm="([^"]+)"', xml)
    print("RelayState=%s signatures=%d %s" % (form.get("RelayState"), len(sigs), sorted(set(sigs))))
    for pat in (r'<samlp:Response[^>]*>', r'<saml:NameID[^>]*>[^<]*</saml:NameID>',
                r'<saml:SubjectConfirmationData[^>]*/?>', r'<saml:Conditions[^>]*>',
                r'<saml:Audience>[^<]*</saml:Audience>', r'<saml:AuthnStatement[^>]*>',
                r'<saml:AttributeValue[^>]*>[^<]*</saml:AttributeValue>'):
        for m in re.findall(pat, xml):
            print("  " + m)
    if "InResponseTo" in xml:
        raise SystemExit("saml_gen check: an IdP-initiated response must not carry InResponseTo")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "idp-metadata":
        return idp_metadata(sys.argv[2])
    if len(sys.argv) >= 3 and sys.argv[1] == "check":
        return check(sys.argv[2])
    p = argparse.ArgumentParser(prog="saml_gen.py bodies")
    p.add_argument("cmd", choices=["bodies"])
    p.add_argument("--dir", required=True)
    p.add_argument("--sp-metadata", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--validity", type=int, default=10800)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    bodies(p.parse_args())


if __name__ == "__main__":
    main()
