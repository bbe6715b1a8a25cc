# SPDX-License-Identifier: AGPL-3.0-or-later
"""Self-check of the test IdPs (saml_idp.py, pysaml2_idp.py), offline: no
daemon, no PostgreSQL. python3-lasso plays the SP, so when a SAML test of
idbridge fails, these tell whether the fixture or the daemon is at fault."""

import urllib.parse

import lasso
import pytest

from pysaml2_idp import Pysaml2IdP
from saml_idp import (NS, LassoIdP, keypair, parse_xml, replace_all, sign_element,
                      verify_element)

SP_BASE = "http://127.0.0.1:9/sso/saml/selfcheck"


def sp_metadata(kp):
    kd = ('<md:KeyDescriptor use="{}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}'
          '</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>')
    return (f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
            f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{SP_BASE}/metadata">'
            f'<md:SPSSODescriptor AuthnRequestsSigned="true" '
            f'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            + kd.format("signing", kp.cert_b64) + kd.format("encryption", kp.cert_b64)
            + f'<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"'
            f' Location="{SP_BASE}/slo"/>'
            f'<md:AssertionConsumerService index="0" isDefault="true" '
            f'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{SP_BASE}/acs"/>'
            f'</md:SPSSODescriptor></md:EntityDescriptor>')


class LassoSP:
    def __init__(self, *idps):
        self.key = keypair("selfcheck-sp")
        self.md = sp_metadata(self.key)
        self.server = lasso.Server.newFromBuffers(self.md, self.key.key_pem, None,
                                                  self.key.cert_pem)
        self.server.signatureMethod = lasso.SIGNATURE_METHOD_RSA_SHA256
        self.server.setEncryptionPrivateKey(self.key.key_pem)
        for idp in idps:
            self.server.addProviderFromBuffer(lasso.PROVIDER_ROLE_IDP, idp.metadata(), None, None)
            idp.add_sp(self.md)

    def authn_request(self, idp):
        login = lasso.Login(self.server)
        login.initAuthnRequest(idp.entity_id, lasso.HTTP_METHOD_REDIRECT)
        login.request.protocolBinding = lasso.SAML2_METADATA_BINDING_POST
        login.msgRelayState = "rs-selfcheck"
        login.buildAuthnRequestMsg()
        return login.msgUrl

    def accept(self, post):
        """Processes a response like idbridge's ACS does with lasso (MAYBE);
        returns the LassoLogin or raises lasso.Error."""
        login = lasso.Login(self.server)
        login.setSignatureVerifyHint(lasso.PROFILE_SIGNATURE_VERIFY_HINT_MAYBE)
        login.processAuthnResponseMsg(post.form["SAMLResponse"])
        return login


@pytest.fixture(scope="module")
def idp():
    return LassoIdP("selfcheck")


@pytest.fixture(scope="module")
def sp(idp):
    return LassoSP(idp)


ATTRS = {"email": ["alice@selfcheck.test"], "displayName": ["Alice"], "memberOf": ["a", "b"]}


@pytest.mark.parametrize("opts", [{}, {"sign_assertion": False}, {"sign_response": False},
                                  {"encrypt": True}, {"encrypt": True, "sign_response": False},
                                  {"sig_alg": "rsa-sha1"}],
                         ids=["both", "response", "assertion", "enc", "enc-assertion", "sha1"])
def test_valid_responses_verify(idp, sp, opts):
    post = idp.sp_initiated(sp.authn_request(idp), "alice", ATTRS, **opts)
    assert post.relay_state == "rs-selfcheck"
    assert post.url == SP_BASE + "/acs"
    login = sp.accept(post)
    assert login.nameIdentifier.content == "alice"
    a = login.response.assertion[0]
    got = {at.name: [v.any[0].content if v.any[0].textChild else v.any[0].dump()
                     for v in at.attributeValue]
           for st in a.attributeStatement for at in st.attribute}
    assert set(got) == set(ATTRS)


@pytest.mark.parametrize("opts", [
    {"sign_response": False, "sign_assertion": False},
    {"signing_key": "attacker"},
    {"signing_key": "attacker", "keyinfo": "keyvalue", "sign_response": False},
    {"encrypt": True, "sign_response": False, "sign_assertion": False},
], ids=["unsigned", "attacker", "attacker-keyvalue", "enc-unsigned"])
def test_forged_responses_fail_lasso(idp, sp, opts):
    if opts.get("signing_key") == "attacker":
        opts = dict(opts, signing_key=keypair("attacker"))
    post = idp.sp_initiated(sp.authn_request(idp), "alice", ATTRS, **opts)
    with pytest.raises(lasso.Error):
        sp.accept(post)


def test_tampering_after_signing_breaks_the_signature(idp, sp):
    post = idp.sp_initiated(sp.authn_request(idp), "alice", ATTRS,
                            xml_filter=lambda x: replace_all(x, ">alice<", ">bob<"))
    with pytest.raises(lasso.Error):
        sp.accept(post)


def test_comment_inserted_after_signing_keeps_the_signature(idp, sp):
    """The premise of the comment attacks: exc-c14n ignores comments."""
    post = idp.sp_initiated(sp.authn_request(idp), "alice.x", ATTRS,
                            xml_filter=lambda x: replace_all(x, ">alice.x<", ">alice<!---->.x<"))
    sp.accept(post)


def test_options_reach_the_xml(idp, sp):
    def drop_audience(ctx):
        ctx.remove("saml:Conditions/saml:AudienceRestriction", ctx.assertion)

    post = idp.sp_initiated(sp.authn_request(idp), "alice", ATTRS, audience="https://x",
                            recipient="https://r", destination="https://d",
                            session_index="_sidx", before_sign=drop_audience)
    root = parse_xml(post.xml)
    assert root.get("Destination") == "https://d"
    a = root.find("saml:Assertion", NS)
    assert a.find("saml:Conditions/saml:AudienceRestriction", NS) is None
    scd = a.find("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", NS)
    assert scd.get("Recipient") == "https://r"
    assert a.find("saml:AuthnStatement", NS).get("SessionIndex") == "_sidx"
    assert verify_element(a, idp.signing_key) and verify_element(root, idp.signing_key)


def test_sign_element_with_foreign_keyinfo_cert(idp):
    post = idp.idp_initiated(list(idp.sps)[0], "alice", ATTRS, sign_response=False)
    a = parse_xml(post.xml).find("saml:Assertion", NS)
    sign_element(a, keypair("attacker"), cert=idp.signing_key)
    assert not verify_element(a, idp.signing_key)
    assert verify_element(a, keypair("attacker"))


def test_single_logout_round_trips(idp, sp):
    post = idp.sp_initiated(sp.authn_request(idp), "carol", ATTRS, session_index="_s1")
    login = sp.accept(post)
    login.acceptSso()
    dump = login.session.dump()
    # SP-initiated
    lo = lasso.Logout(sp.server)
    lo.setSessionFromDump(dump)
    lo.initRequest(None, lasso.HTTP_METHOD_REDIRECT)
    lo.buildRequestMsg()
    back = idp.answer_logout(lo.msgUrl)
    assert idp.last_logout_request.request.sessionIndex == "_s1"
    lo.processResponseMsg(urllib.parse.urlsplit(back).query)
    # IdP-initiated
    url = idp.logout_request(f"{SP_BASE}/metadata", "carol")
    lo2 = lasso.Logout(sp.server)
    lo2.processRequestMsg(urllib.parse.urlsplit(url).query)
    assert lo2.request.nameId.content == "carol"
    lo2.setSessionFromDump(dump)
    lo2.validateRequest()
    lo2.buildResponseMsg()
    idp.process_logout_response(lo2.msgUrl)


def test_pysaml2_idp_response_verifies(tmp_path):
    p2 = Pysaml2IdP(tmp_path)
    sp = LassoSP(p2)
    post = p2.sp_initiated(sp.authn_request(p2), "dave",
                           {"mail": ["dave@selfcheck.test"], "displayName": ["Dave"]})
    assert post.relay_state == "rs-selfcheck"
    login = sp.accept(post)
    assert login.nameIdentifier.content == "dave"
