# SPDX-License-Identifier: AGPL-3.0-or-later
"""SAML attacks (issue 3): each one refused with a 4xx (never a 5xx), a
problem whose type names the reason, a login_failure activity row, and
nothing written to users, identities, memberships, sessions or groups.

Every forged response comes out of the same pipeline as the valid control
(test_control_*): lasso builds it, saml_idp.py signs it with xmlsec; an
attack differs from the control only by its option or hook.

Cast: on one connection, `victim` already signed in once (identity known);
`mallory` is a legitimate user of the same IdP who tampers with her own
response to become the victim.
"""

import base64
import copy
import secrets

import pytest

from lxml import etree

import idbtest
from saml_fixtures import JSON, SamlHarness, assert_logged_in, wait_until
from saml_idp import (NS, Canary, LassoIdP, encrypt_assertion, keypair, new_id, q, replace_all,
                      replace_once, sign_element, strip_signatures)

PASSWD_MARKERS = ("root:x:0:0", "/bin/bash", "/usr/sbin/nologin", "daemon:x:")

SIGNATURE = ("signature",)


@pytest.fixture(scope="module")
def saml(daemon, acme, db_url):
    return SamlHarness(daemon, acme, db_url)


class Cast:
    def __init__(self, conn):
        self.conn = conn
        self.victim_email = conn.email("victim")
        self.victim_nameid = "victim-" + secrets.token_hex(3)
        self.mallory_email = conn.email("mallory")
        self.mallory_nameid = "mallory-" + secrets.token_hex(3)

    def victim_attrs(self):
        return {"email": [self.victim_email], "displayName": ["Victim"], "memberOf": []}

    def mallory_attrs(self, email=None):
        return {"email": [email or self.mallory_email], "displayName": ["Mallory"]}


@pytest.fixture(scope="module")
def cast(saml):
    conn = saml.create_connection()
    c = Cast(conn)
    saml.login_ok(conn, c.victim_nameid, c.victim_attrs())
    saml.login_ok(conn, c.mallory_nameid, c.mallory_attrs())
    return c


@pytest.fixture(scope="module")
def unsolicited(saml):
    """A connection that accepts IdP-initiated responses (no InResponseTo
    check: only the replay cache and the other checks stand)."""
    conn = saml.create_connection(saml={"allow_idp_initiated": True})
    c = Cast(conn)
    saml.login_ok(conn, c.victim_nameid, c.victim_attrs())
    return c


def forge(saml, cast, nameid=None, attributes=None, conn=None, **opts):
    """SP-initiated: a fresh AuthnRequest from the daemon, answered by the
    IdP with opts (the attack). Mallory's identity by default."""
    conn = conn or cast.conn
    loc = saml.start_login(conn)
    return conn.idp.sp_initiated(loc, nameid or cast.mallory_nameid,
                                 attributes if attributes is not None else cast.mallory_attrs(),
                                 **opts)


def refused(saml, post, hints, daemon=None, **kw):
    return saml.expect_refused(lambda: saml.post_acs(post, daemon=daemon), hints, **kw)


# --------------------------------------------------------------------------
# controls: the unmodified pipeline is accepted


def test_control_sp_initiated_response_is_accepted(saml, cast, daemon):
    post = forge(saml, cast)
    assert_logged_in(saml.post_acs(post), daemon)


def test_control_unsolicited_response_is_accepted(saml, unsolicited, daemon):
    c = unsolicited
    post = c.conn.idp.idp_initiated(c.conn.entity_id, c.mallory_nameid, c.mallory_attrs(),
                                    relay_state="/ok")
    assert_logged_in(saml.post_acs(post), daemon, "/ok")


# --------------------------------------------------------------------------
# signatures


def test_tampered_signed_value(saml, cast):
    """Mallory's signed response, her e-mail changed to the victim's after
    signing (response and assertion signed)."""
    post = forge(saml, cast, xml_filter=lambda x: replace_all(
        x, f">{cast.mallory_email}<", f">{cast.victim_email}<"))
    refused(saml, post, SIGNATURE)


def test_tampered_nameid_in_assertion_only_signed_response(saml, cast):
    post = forge(saml, cast, sign_response=False, xml_filter=lambda x: replace_all(
        x, f">{cast.mallory_nameid}<", f">{cast.victim_nameid}<"))
    refused(saml, post, SIGNATURE)


def test_corrupted_signature_value(saml, cast):
    def corrupt(ctx):
        sv = ctx.find("saml:Assertion/ds:Signature/ds:SignatureValue")
        t = sv.text.strip()
        sv.text = ("A" if t[5] != "A" else "B").join([t[:5], t[6:]])
    refused(saml, forge(saml, cast, sign_response=False, after_sign=corrupt), SIGNATURE)


def test_wholly_unsigned_response(saml, cast):
    post = forge(saml, cast, nameid=cast.victim_nameid, attributes=cast.victim_attrs(),
                 sign_response=False, sign_assertion=False)
    _, body, rows = refused(saml, post, SIGNATURE)
    # named for what it is, not as a signature that failed to verify
    assert body["type"].endswith("saml-signature-missing"), body
    assert [a["reason"] for a in rows] == ["signature_missing"], rows


def test_unsigned_assertion_in_response_signed_by_foreign_key(saml, cast):
    attacker = keypair("attacker")
    post = forge(saml, cast, nameid=cast.victim_nameid, attributes=cast.victim_attrs(),
                 sign_assertion=False, signing_key=attacker)
    refused(saml, post, SIGNATURE)


@pytest.mark.parametrize("keyinfo", ["cert", "keyvalue", "both"])
def test_assertion_signed_by_key_not_in_metadata_with_key_in_keyinfo(saml, cast, keyinfo):
    """The attacker signs with her own key and ships it in KeyInfo (X509
    certificate, raw RSA KeyValue, or both): the key must come from the IdP
    metadata only."""
    attacker = keypair("attacker")
    post = forge(saml, cast, nameid=cast.victim_nameid, attributes=cast.victim_attrs(),
                 signing_key=attacker, keyinfo=keyinfo)
    refused(saml, post, SIGNATURE + ("unknown", "key", "certificate"))


def test_assertion_signed_by_attacker_but_keyinfo_names_the_idp_cert(saml, cast):
    attacker = keypair("attacker")
    post = forge(saml, cast, nameid=cast.victim_nameid, attributes=cast.victim_attrs(),
                 signing_key=attacker, keyinfo_cert=cast.conn.idp.signing_key)
    refused(saml, post, SIGNATURE)


def test_response_signed_by_attacker_wrapping_validly_signed_assertion(saml, cast):
    """The response signature is bad but the assertion's is good: a bad
    signature anywhere refuses the message."""
    attacker = keypair("attacker")

    def resign_response(ctx):
        sign_element(ctx.root, attacker)
    post = forge(saml, cast, sign_response=False, after_sign=resign_response)
    refused(saml, post, SIGNATURE)


def test_signature_reference_to_another_element(saml, cast):
    """A signature whose Reference points at the Issuer-less Status element
    (not the assertion): the assertion is unsigned in effect."""
    def point_elsewhere(ctx):
        status = ctx.find("samlp:Status")
        status.set("ID", new_id())
        a = ctx.assertion
        a.find("saml:Subject/saml:NameID", NS).text = cast.victim_nameid
        sign_element(a, ctx.opts["signing_key"], reference_id=status.get("ID"))
    post = forge(saml, cast, sign_response=False, sign_assertion=False, after_sign=point_elsewhere)
    refused(saml, post, SIGNATURE + ("malformed",))


def test_encrypted_unsigned_assertion_forged_with_the_sp_public_certificate(saml, cast):
    """Anyone can encrypt for the SP (its certificate is public): an
    encrypted assertion proves nothing without a signature."""
    post = forge(saml, cast, nameid=cast.victim_nameid, attributes=cast.victim_attrs(),
                 encrypt=True, sign_response=False, sign_assertion=False)
    refused(saml, post, SIGNATURE + ("assertion",))


def test_encrypted_assertion_signed_by_attacker(saml, cast):
    attacker = keypair("attacker")
    post = forge(saml, cast, nameid=cast.victim_nameid, attributes=cast.victim_attrs(),
                 encrypt=True, sign_response=False, signing_key=attacker)
    refused(saml, post, SIGNATURE + ("assertion",))


def test_rsa_sha1_refused_by_default(saml, cast):
    post = forge(saml, cast, sig_alg="rsa-sha1")
    refused(saml, post, ("sha1", "weak", "algorithm"))


def test_sha1_digest_under_rsa_sha256_refused(saml, cast):
    post = forge(saml, cast, sig_alg="rsa-sha256", digest_alg="sha1")
    refused(saml, post, ("sha1", "weak", "algorithm", "digest"))


def test_rsa_sha1_accepted_when_the_connection_allows_it(saml, daemon):
    conn = saml.create_connection(saml={"allow_sha1": True})
    saml.login_ok(conn, "sha1-user", {"email": [conn.email("sha1")], "displayName": ["Old IdP"]},
                  sig_alg="rsa-sha1")
    saml.login_ok(conn, "sha1-user", {"email": [conn.email("sha1")], "displayName": ["Old IdP"]},
                  sig_alg="rsa-sha1", sign_response=False)


def test_response_from_idp_a_posted_to_connection_b(saml, cast):
    """IdP A (trusted by connection A only) answers connection B's request:
    B trusts a different IdP."""
    conn_b = saml.create_connection(idp=LassoIdP(keys=[keypair("idp-b-only")]))
    idp_a = cast.conn.idp
    idp_a.add_sp(conn_b.sp_md)
    loc = saml.start_login(conn_b)
    post = idp_a.sp_initiated(loc, "b-user", {"email": [conn_b.email("victim")],
                                               "displayName": ["B Victim"]})
    assert post.acs_path == conn_b.base + "/acs"
    refused(saml, post, ("issuer", "unknown", "signature", "idp", "provider"))


def test_response_for_connection_a_posted_to_connection_b(saml, cast):
    """A valid response addressed to connection A, posted to B's ACS (B's
    IdP is another one)."""
    conn_b = saml.create_connection()
    post = forge(saml, cast)
    saml.expect_refused(lambda: saml.post_acs(post, slug_path=conn_b.base + "/acs"),
                        ("issuer", "unknown", "signature", "destination", "audience",
                         "recipient", "in-response-to", "request"))


# --------------------------------------------------------------------------
# addressing and time


def test_wrong_audience(saml, cast):
    refused(saml, forge(saml, cast, audience="https://other-sp.example/metadata"), ("audience",))


def test_audience_list_without_us(saml, cast):
    refused(saml, forge(saml, cast, audience=["https://a.example/sp", "https://b.example/sp"]),
            ("audience",))


def test_wrong_recipient(saml, cast):
    refused(saml, forge(saml, cast, recipient="https://other-sp.example/acs"),
            ("recipient", "subject-confirmation"))


def test_wrong_destination(saml, cast):
    refused(saml, forge(saml, cast, destination="https://other-sp.example/acs"), ("destination",))


def test_destination_of_another_connection(saml, cast):
    other = saml.create_connection()
    refused(saml, forge(saml, cast, destination=other.acs_url, recipient=other.acs_url),
            ("destination", "recipient"))


def test_expired_assertion(saml, cast):
    refused(saml, forge(saml, cast, not_before=-3600, not_on_or_after=-600,
                        authn_instant=-3600, issue_instant=-3600),
            ("expired", "time"))


def test_expired_subject_confirmation_only(saml, cast):
    refused(saml, forge(saml, cast, scd_not_on_or_after=-600),
            ("expired", "subject-confirmation", "time"))


def test_not_yet_valid_assertion(saml, cast):
    refused(saml, forge(saml, cast, not_before=900, not_on_or_after=1800),
            ("not-yet-valid", "time", "future"))


def test_wrong_in_response_to(saml, cast):
    refused(saml, forge(saml, cast, in_response_to="_" + secrets.token_hex(16)),
            ("in-response-to", "inresponseto", "request", "unknown"))


def test_response_to_a_request_of_another_browser_session(saml, cast):
    """InResponseTo names a real request, but the posted RelayState belongs
    to another login attempt."""
    loc1 = saml.start_login(cast.conn)
    loc2 = saml.start_login(cast.conn)
    post1 = cast.conn.idp.sp_initiated(loc1, cast.mallory_nameid, cast.mallory_attrs())
    post2 = cast.conn.idp.sp_initiated(loc2, cast.mallory_nameid, cast.mallory_attrs())
    post1.relay_state = post2.relay_state
    refused(saml, post1, ("in-response-to", "inresponseto", "request", "relay", "unsolicited"))


def test_failed_idp_status(saml, cast):
    """The IdP says no (status Responder, no assertion, signed): refused as
    the IdP's refusal, not as a bad signature."""
    refused(saml, forge(saml, cast, status="urn:oasis:names:tc:SAML:2.0:status:Responder",
                        before_sign=lambda ctx: ctx.root.remove(ctx.assertion)),
            ("idp-refused", "status"))


def test_failed_idp_status_with_an_assertion(saml, cast):
    """A non-Success status never logs anyone in, whatever else is there."""
    refused(saml, forge(saml, cast, status="urn:oasis:names:tc:SAML:2.0:status:Requester"),
            ("idp-refused", "status"))


# --------------------------------------------------------------------------
# replay


def test_replay_same_instance(saml, cast, daemon):
    post = forge(saml, cast)
    assert_logged_in(saml.post_acs(post), daemon)
    refused(saml, post, ("replay", "used", "in-response-to", "inresponseto", "request",
                         "unsolicited"))


def test_replay_unsolicited_same_instance(saml, unsolicited, daemon):
    """IdP-initiated: no request to consume, the assertion-ID cache alone
    must stop the replay."""
    c = unsolicited
    post = c.conn.idp.idp_initiated(c.conn.entity_id, c.mallory_nameid, c.mallory_attrs(),
                                    relay_state="/r")
    assert_logged_in(saml.post_acs(post), daemon, "/r")
    refused(saml, post, ("replay",))


def test_replay_unsolicited_with_new_response_id(saml, unsolicited, daemon):
    """Same signed assertion in a new, unsigned Response envelope (new
    Response ID): the assertion ID is what is single-use."""
    c = unsolicited
    post = c.conn.idp.idp_initiated(c.conn.entity_id, c.mallory_nameid, c.mallory_attrs(),
                                    relay_state="/r", sign_response=False)
    assert_logged_in(saml.post_acs(post), daemon, "/r")
    root = etree.fromstring(post.xml)
    root.set("ID", new_id())
    refused(saml, post.with_xml(etree.tostring(root)), ("replay",))


def test_replay_to_second_instance(make_daemon, tmp_path, acme, db_url):
    """Accepted by one instance, replayed to another one behind the same
    public URL, sharing PostgreSQL and Redis (unsolicited: only the shared
    assertion-ID cache can stop it)."""
    keys = {"saml": {"sp_key_file": str(tmp_path / "sp.key"),
                     "sp_cert_file": str(tmp_path / "sp.crt")}}
    public = "http://idbridge-replay.lb.example.test"
    a = make_daemon(config=keys, public_url=public)
    b = make_daemon(config=keys, public_url=public)
    h = SamlHarness(a, acme, db_url)
    conn = h.create_connection(saml={"allow_idp_initiated": True})
    post = conn.idp.idp_initiated(conn.entity_id, "lb-replay",
                                  {"email": [conn.email("lbr")], "displayName": ["LB"]},
                                  relay_state="/r")
    assert_logged_in(h.post_acs(post, daemon=a), a, "/r")
    h.expect_refused(lambda: h.post_acs(post, daemon=b), ("replay",))


def test_acs_fails_closed_when_redis_is_down(make_daemon, make_private_redis, acme, db_url):
    """The replay cache lives in Redis: without it a response cannot be
    checked for replay, so it is refused (503), never accepted."""
    red = make_private_redis()
    d = make_daemon(redis_url=red.url)
    h = SamlHarness(d, acme, db_url)
    conn = h.create_connection(saml={"allow_idp_initiated": True})
    post = conn.idp.idp_initiated(conn.entity_id, "redis-down",
                                  {"email": [conn.email("rd")], "displayName": ["RD"]},
                                  relay_state="/r")
    red.stop()
    before = h.snapshot()
    r = h.post_acs(post, daemon=d)
    assert r.status_code == 503, (r.status_code, r.headers.get("Location"), r.text[:300])
    assert not [c for c in idbtest.parse_set_cookies(r) if c["name"] == "idb_session" and c["value"]]
    assert not h.snapshot()["sessions"] != before["sessions"], "a session was created"
    # Redis back: once the daemon's connections have reconnected (503
    # until then), the same response, never consumed, goes through.
    red.start()
    answers = []

    def accepted():
        answers.append(h.post_acs(post, daemon=d))
        return answers[-1].status_code != 503
    assert wait_until(accepted, timeout=15, step=0.2), \
        "the ACS still answers 503 15 s after Redis came back"
    assert_logged_in(answers[-1], d, "/r")


# --------------------------------------------------------------------------
# signature wrapping (XSW)


def test_xsw_signed_assertion_moved_into_extensions(saml, cast):
    """The signed assertion goes into samlp:Extensions; an unsigned forged
    one (victim) takes its place."""
    def wrap(ctx):
        orig = ctx.assertion
        forged = ctx.forged_assertion(cast.victim_nameid, {"email": [cast.victim_email]})
        root = ctx.root
        idx = list(root).index(orig)
        root.remove(orig)
        ext = etree.Element(q("samlp", "Extensions"))
        ext.append(orig)
        root.insert(list(root).index(root.find("saml:Issuer", NS)) + 1, ext)
        root.insert(idx + 1, forged)
    refused(saml, forge(saml, cast, sign_response=False, after_sign=wrap),
            SIGNATURE + ("assertion", "extensions", "wrapping"))


def test_xsw_forged_assertion_with_the_signed_ones_id(saml, cast):
    """As above, but the forged assertion reuses the signed one's ID so an
    ID lookup may find either."""
    def wrap(ctx):
        orig = ctx.assertion
        forged = ctx.forged_assertion(cast.victim_nameid, {"email": [cast.victim_email]},
                                      fresh_id=False)
        root = ctx.root
        idx = list(root).index(orig)
        root.remove(orig)
        ext = etree.Element(q("samlp", "Extensions"))
        ext.append(orig)
        root.insert(list(root).index(root.find("saml:Issuer", NS)) + 1, ext)
        root.insert(idx + 1, forged)
    refused(saml, forge(saml, cast, sign_response=False, after_sign=wrap),
            SIGNATURE + ("assertion", "wrapping", "duplicate"))


def test_xsw_signed_assertion_in_forged_assertions_advice(saml, cast):
    """XSW-7: the forged assertion carries the original (signed) one in its
    Advice and the original's signature, which still verifies by ID."""
    def wrap(ctx):
        orig = ctx.assertion
        forged = ctx.forged_assertion(cast.victim_nameid, {"email": [cast.victim_email]})
        sig = copy.deepcopy(orig.find("ds:Signature", NS))
        forged.insert(1, sig)
        advice = etree.Element(q("saml", "Advice"))
        advice.append(orig)  # moves it
        conditions = forged.find("saml:Conditions", NS)
        conditions.addnext(advice)
        ctx.root.append(forged)
    refused(saml, forge(saml, cast, sign_response=False, after_sign=wrap),
            SIGNATURE + ("assertion", "advice", "wrapping"))


def test_xsw_signed_assertion_in_signature_object(saml, cast):
    """XSW-8: the original assertion hidden in the forged one's
    ds:Signature/ds:Object."""
    def wrap(ctx):
        orig = ctx.assertion
        forged = ctx.forged_assertion(cast.victim_nameid, {"email": [cast.victim_email]})
        sig = copy.deepcopy(orig.find("ds:Signature", NS))
        obj = etree.SubElement(sig, q("ds", "Object"))
        orig_copy = copy.deepcopy(orig)
        strip_signatures(orig_copy)
        obj.append(orig_copy)
        forged.insert(1, sig)
        ctx.root.replace(orig, forged)
    refused(saml, forge(saml, cast, sign_response=False, after_sign=wrap),
            SIGNATURE + ("assertion", "object", "wrapping"))


def test_xsw_whole_signed_response_wrapped_in_forged_response(saml, cast):
    """XSW-1/2 on a response-signed message: a new Response (victim
    assertion, unsigned) carries the original signed Response in its
    Extensions and a copy of the original response signature."""
    def wrap(ctx):
        orig_root = copy.deepcopy(ctx.root)
        new_root = ctx.root
        sig = copy.deepcopy(new_root.find("ds:Signature", NS))
        for old in new_root.findall("ds:Signature", NS):
            new_root.remove(old)
        new_root.set("ID", new_id())
        a = new_root.find("saml:Assertion", NS)
        a.find("saml:Subject/saml:NameID", NS).text = cast.victim_nameid
        for v in a.iter(q("saml", "AttributeValue")):
            if v.text == cast.mallory_email:
                v.text = cast.victim_email
        issuer = new_root.find("saml:Issuer", NS)
        issuer.addnext(sig)
        ext = etree.Element(q("samlp", "Extensions"))
        ext.append(orig_root)
        sig.addnext(ext)
    refused(saml, forge(saml, cast, sign_assertion=False, after_sign=wrap),
            SIGNATURE + ("assertion", "wrapping", "response"))


def test_two_assertions_signed_and_unsigned(saml, cast):
    """Mallory's signed assertion followed by an unsigned forged one."""
    def add(ctx):
        ctx.root.append(ctx.forged_assertion(cast.victim_nameid, {"email": [cast.victim_email]}))
    refused(saml, forge(saml, cast, sign_response=False, after_sign=add),
            ("assertion-count", "assertion", "signature"))


def test_two_assertions_unsigned_first(saml, cast):
    def add(ctx):
        forged = ctx.forged_assertion(cast.victim_nameid, {"email": [cast.victim_email]})
        ctx.assertion.addprevious(forged)
    refused(saml, forge(saml, cast, sign_response=False, after_sign=add),
            ("assertion-count", "assertion", "signature"))


def test_two_validly_signed_assertions(saml, cast):
    """Both assertions genuinely signed by the IdP, inside a signed Response:
    exactly one assertion is allowed."""
    def add(ctx):
        second = ctx.forged_assertion(cast.victim_nameid, {"email": [cast.victim_email]})
        ctx.root.append(second)
        ctx.sign(second)
    refused(saml, forge(saml, cast, before_sign=add),
            ("assertion-count", "assertion"))


def test_assertion_plus_encrypted_assertion(saml, cast):
    def add(ctx):
        second = ctx.forged_assertion(cast.victim_nameid, {"email": [cast.victim_email]})
        ctx.root.append(second)
        ctx.sign(second)
        encrypt_assertion(second, ctx.sp.encryption_cert)
    refused(saml, forge(saml, cast, before_sign=add), ("assertion-count", "assertion"))


# --------------------------------------------------------------------------
# comments, CDATA and markup inside values that decide identity


def test_comment_in_nameid(saml, cast):
    """Signed NameID text is '<victim>.attacker'; a comment after the
    victim's part keeps the signature valid (exc-c14n drops comments). A
    reader of the first text node would see the victim's NameID."""
    signed = cast.victim_nameid + ".attacker"
    post = forge(saml, cast, nameid=signed,
                 attributes={"email": ["mallory@evil.example"], "displayName": ["M"]},
                 xml_filter=lambda x: replace_all(x, f">{signed}<",
                                                  f">{cast.victim_nameid}<!---->.attacker<"))
    refused(saml, post, ("markup", "comment", "nameid", "subject", "domain", "value"))


def test_cdata_in_nameid(saml, cast):
    signed = cast.victim_nameid + ".attacker"
    post = forge(saml, cast, nameid=signed,
                 attributes={"email": ["mallory@evil.example"], "displayName": ["M"]},
                 xml_filter=lambda x: replace_all(
                     x, f">{signed}<", f">{cast.victim_nameid}<![CDATA[.attacker]]><"))
    refused(saml, post, ("markup", "cdata", "nameid", "subject", "domain", "value"))


def test_comment_inside_email_value(saml, cast):
    """Signed e-mail 'victim@<domain>.evil.example' (a domain outside the
    allow-list) split by a comment: reading the first text node only would
    give the victim's address and link Mallory's new identity to it."""
    signed = cast.victim_email + ".evil.example"
    post = forge(saml, cast, nameid="mallory-comment-" + secrets.token_hex(2),
                 attributes={"email": [signed], "displayName": ["M"]},
                 xml_filter=lambda x: replace_once(x, f">{signed}<",
                                                   f">{cast.victim_email}<!---->.evil.example<"))
    refused(saml, post, ("markup", "comment", "attribute", "domain", "value"))


def test_cdata_inside_email_value(saml, cast):
    """Debian's lasso drops CDATA content from attribute values: the signed
    text 'victim@<domain>.evil.example' would read as the victim's e-mail."""
    signed = cast.victim_email + ".evil.example"
    post = forge(saml, cast, nameid="mallory-cdata-" + secrets.token_hex(2),
                 attributes={"email": [signed], "displayName": ["M"]},
                 xml_filter=lambda x: replace_once(
                     x, f">{signed}<", f">{cast.victim_email}<![CDATA[.evil.example]]><"))
    refused(saml, post, ("markup", "cdata", "attribute", "domain", "value"))


def test_cdata_hiding_a_prefix_of_email_value(saml, cast, daemon):
    """The CDATA holds a prefix: signed text 'x<victim email>', which a
    CDATA-dropping reader sees as the victim's address. The signed value is
    in an allowed domain, so creating user 'x<victim email>' is correct
    too; what must never happen is a session for the victim."""
    signed = "x" + cast.victim_email
    post = forge(saml, cast, nameid="mallory-cdata2-" + secrets.token_hex(2),
                 attributes={"email": [signed], "displayName": ["M"]},
                 xml_filter=lambda x: replace_once(
                     x, f">{signed}<", f"><![CDATA[x]]>{cast.victim_email}<"))
    before, mark = saml.snapshot(), saml.activity_mark()
    r = saml.post_acs(post)
    if r.status_code == 303:
        tok = assert_logged_in(r, daemon)
        assert saml.check(tok).headers["X-Auth-Email"] == signed, \
            "logged in as the victim through a CDATA section"
    else:
        saml.assert_refused(r, ("markup", "cdata", "attribute", "value"), before, mark)


def test_element_markup_inside_email_value(saml, cast):
    """An element child in the e-mail AttributeValue, added before signing
    (so the signature is valid): identity values must be plain text."""
    def markup(ctx):
        v = ctx.attribute_values("email")[0]
        v.text = cast.victim_email
        child = etree.SubElement(v, q("saml", "NameID"))
        child.text = "ignored"
    refused(saml, forge(saml, cast, nameid="mallory-markup-" + secrets.token_hex(2),
                        before_sign=markup),
            ("markup", "attribute", "value"))


def test_two_values_for_single_valued_email(saml, cast):
    post = forge(saml, cast, nameid="mallory-two-" + secrets.token_hex(2),
                 attributes={"email": [cast.mallory_email, cast.victim_email],
                             "displayName": ["M"]})
    refused(saml, post, ("attribute", "email", "ambiguous", "multiple", "value"))


def test_two_values_for_email_victim_first(saml, cast):
    post = forge(saml, cast, nameid="mallory-two2-" + secrets.token_hex(2),
                 attributes={"email": [cast.victim_email, cast.mallory_email],
                             "displayName": ["M"]})
    refused(saml, post, ("attribute", "email", "ambiguous", "multiple", "value"))


def test_same_attribute_name_under_another_name_format(saml, cast):
    """'email' twice: basic format (Mallory's) and uri format (victim's).
    Expected: refused as ambiguous, never confused with the real one."""
    post = forge(saml, cast, nameid="mallory-fmt-" + secrets.token_hex(2), attributes=[
        ("email", [cast.mallory_email], "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"),
        ("email", [cast.victim_email], "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"),
        ("displayName", ["M"], "urn:oasis:names:tc:SAML:2.0:attrname-format:basic")])
    refused(saml, post, ("ambiguous", "attribute", "duplicate"))


def test_same_attribute_in_two_attribute_statements(saml, cast):
    def split(ctx):
        st = ctx.find("saml:AttributeStatement", ctx.assertion)
        st2 = etree.Element(q("saml", "AttributeStatement"))
        a = etree.SubElement(st2, q("saml", "Attribute"), Name="email",
                             NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic")
        etree.SubElement(a, q("saml", "AttributeValue")).text = cast.victim_email
        st.addnext(st2)
    refused(saml, forge(saml, cast, nameid="mallory-st2-" + secrets.token_hex(2),
                        before_sign=split),
            ("ambiguous", "attribute", "duplicate", "multiple"))


# --------------------------------------------------------------------------
# missing pieces (removed before signing: the signature is valid)


def _remove(path):
    def hook(ctx):
        assert ctx.remove(path, ctx.assertion) >= 1, path
    return hook


def _drop_attr(path, attr):
    def hook(ctx):
        el = ctx.find(path, ctx.assertion)
        assert el is not None and attr in el.attrib, (path, attr)
        del el.attrib[attr]
    return hook


def test_missing_subject_confirmation(saml, cast):
    refused(saml, forge(saml, cast, before_sign=_remove("saml:Subject/saml:SubjectConfirmation")),
            ("subject-confirmation", "confirmation", "bearer", "subject"))


def test_subject_confirmation_not_bearer(saml, cast):
    def hok(ctx):
        ctx.find("saml:Subject/saml:SubjectConfirmation", ctx.assertion).set(
            "Method", "urn:oasis:names:tc:SAML:2.0:cm:sender-vouches")
    refused(saml, forge(saml, cast, before_sign=hok),
            ("subject-confirmation", "confirmation", "bearer"))


def test_missing_recipient(saml, cast):
    refused(saml, forge(saml, cast, recipient=""),
            ("recipient", "subject-confirmation"))


def test_missing_subject_confirmation_not_on_or_after(saml, cast):
    refused(saml, forge(saml, cast, before_sign=_drop_attr(
        "saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", "NotOnOrAfter")),
        ("subject-confirmation", "not-on-or-after", "expired", "time"))


def test_missing_conditions(saml, cast):
    refused(saml, forge(saml, cast, before_sign=_remove("saml:Conditions")),
            ("conditions", "audience"))


def test_missing_audience_restriction(saml, cast):
    refused(saml, forge(saml, cast, before_sign=_remove("saml:Conditions/saml:AudienceRestriction")),
            ("audience", "conditions"))


def test_unknown_condition(saml, cast):
    """A Condition the SP does not understand makes the assertion
    Indeterminate (SAML core 2.5.1.5): refuse."""
    def add(ctx):
        cond = ctx.find("saml:Conditions", ctx.assertion)
        c = etree.SubElement(cond, q("saml", "Condition"),
                             nsmap={"ext": "urn:example:idbridge:ext", "xsi": NS["xsi"]})
        c.set("{%s}type" % NS["xsi"], "ext:OnlyOnTuesdays")
    refused(saml, forge(saml, cast, before_sign=add),
            ("conditions", "condition", "unknown", "malformed"))


def test_missing_destination_on_signed_response(saml, cast):
    """Destination is required when the response is signed (SAML bindings
    3.5.5.2); without it a response could be posted to any SP."""
    refused(saml, forge(saml, cast, destination=""), ("destination",))


def test_missing_nameid(saml, cast):
    refused(saml, forge(saml, cast, before_sign=_remove("saml:Subject/saml:NameID")),
            ("subject", "nameid", "missing"))


def test_empty_nameid(saml, cast):
    def empty(ctx):
        ctx.nameid().text = ""
    refused(saml, forge(saml, cast, before_sign=empty), ("subject", "nameid", "missing", "empty"))


def test_missing_authn_statement(saml, cast):
    refused(saml, forge(saml, cast, before_sign=_remove("saml:AuthnStatement")),
            ("authn-statement", "authn", "statement"))


def test_missing_email_attribute(saml, cast):
    refused(saml, forge(saml, cast, nameid="mallory-noemail-" + secrets.token_hex(2),
                        attributes={"displayName": ["No Mail"]}),
            ("email", "attribute", "missing", "not-found", "account"))


# --------------------------------------------------------------------------
# XML parsing: DTDs, entities, external references


def test_doctype_billion_laughs(saml, cast):
    dtd = ('<!DOCTYPE samlp:Response [<!ENTITY lol "lol">'
           + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
                     for i in range(1, 10))
           + ']>')
    post = forge(saml, cast, xml_filter=lambda x: dtd.encode() + b"\n" + replace_once(
        x, f">{cast.mallory_email}<", f">&lol9;{cast.mallory_email}<"))
    r, body, _ = refused(saml, post, ("dtd", "doctype", "entity", "malformed"))
    assert "lollollol" not in r.text


def test_doctype_external_entity_file(saml, cast):
    """XXE: an external entity pointing at /etc/passwd used as the e-mail.
    Its content must appear nowhere: not in the answer, not in any table."""
    dtd = '<!DOCTYPE samlp:Response [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    post = forge(saml, cast, nameid="mallory-xxe-" + secrets.token_hex(2),
                 xml_filter=lambda x: dtd.encode() + b"\n" + replace_once(
                     x, f">{cast.mallory_email}<", ">&xxe;<"))
    r, body, acts = refused(saml, post, ("dtd", "doctype", "entity", "malformed"),
                            must_not_contain=PASSWD_MARKERS)
    for marker in PASSWD_MARKERS[:2]:
        assert not idbtest.tables_containing(saml.db_url, marker), \
            f"/etc/passwd content ({marker}) stored in the database"


def test_doctype_external_entity_over_http_is_never_fetched(saml, cast):
    with Canary() as canary:
        dtd = (f'<!DOCTYPE samlp:Response SYSTEM "{canary.url}/dtd" '
               f'[<!ENTITY xxe SYSTEM "{canary.url}/entity"><!ENTITY % pe SYSTEM '
               f'"{canary.url}/pe"> %pe;]>')
        post = forge(saml, cast, xml_filter=lambda x: dtd.encode() + b"\n" + replace_once(
            x, f">{cast.mallory_email}<", ">&xxe;<"))
        refused(saml, post, ("dtd", "doctype", "entity", "malformed"))
    assert canary.requests == [], f"the daemon fetched {canary.requests}"


def test_internal_subset_only_doctype(saml, cast):
    """A DOCTYPE with nothing in it is still refused (no DTD processing at
    all, whatever it holds)."""
    post = forge(saml, cast, xml_filter=lambda x: b"<!DOCTYPE samlp:Response>\n" + x)
    _, _, rows = refused(saml, post, ("dtd", "doctype"))
    # the activity row names the rule that refused it
    assert [a["reason"] for a in rows] == ["xml_dtd"], rows


def test_encrypted_assertion_cipher_reference_is_never_fetched(saml, cast):
    with Canary() as canary:
        def hook(ctx):
            ed = ctx.find("saml:EncryptedAssertion/xenc:EncryptedData")
            cd = ed.find("xenc:CipherData", NS)
            for ch in list(cd):
                cd.remove(ch)
            etree.SubElement(cd, q("xenc", "CipherReference"), URI=canary.url + "/cipher")
            sign_element(ctx.root, ctx.opts["signing_key"])

        post = forge(saml, cast, encrypt=True, sign_response=False, after_sign=hook)
        refused(saml, post, ("external", "reference", "encrypt", "decrypt", "assertion"))
    assert canary.requests == [], f"the daemon fetched {canary.requests}"


def test_encrypted_key_retrieval_method_is_never_fetched(saml, cast):
    with Canary() as canary:
        def hook(ctx):
            ed = ctx.find("saml:EncryptedAssertion/xenc:EncryptedData")
            ki = ed.find("ds:KeyInfo", NS)
            for ch in list(ki):
                ki.remove(ch)
            etree.SubElement(ki, q("ds", "RetrievalMethod"), URI=canary.url + "/key",
                             Type="http://www.w3.org/2001/04/xmlenc#EncryptedKey")
            sign_element(ctx.root, ctx.opts["signing_key"])

        post = forge(saml, cast, encrypt=True, sign_response=False, after_sign=hook)
        refused(saml, post, ("external", "reference", "retrieval", "encrypt", "decrypt",
                             "assertion"))
    assert canary.requests == [], f"the daemon fetched {canary.requests}"


def test_encrypted_key_cipher_reference_is_never_fetched(saml, cast):
    with Canary() as canary:
        def hook(ctx):
            ek = ctx.find("saml:EncryptedAssertion/xenc:EncryptedData/ds:KeyInfo/xenc:EncryptedKey")
            cd = ek.find("xenc:CipherData", NS)
            for ch in list(cd):
                cd.remove(ch)
            etree.SubElement(cd, q("xenc", "CipherReference"), URI=canary.url + "/ekey")
            sign_element(ctx.root, ctx.opts["signing_key"])

        post = forge(saml, cast, encrypt=True, sign_response=False, after_sign=hook)
        refused(saml, post, ("external", "reference", "encrypt", "decrypt", "assertion"))
    assert canary.requests == [], f"the daemon fetched {canary.requests}"


def test_signature_keyinfo_retrieval_method_is_never_fetched(saml, cast):
    """KeyInfo of the signature itself points at a URL (the key must come
    from metadata; nothing is fetched)."""
    with Canary() as canary:
        def hook(ctx):
            for sig in ctx.root.iter(q("ds", "Signature")):
                ki = sig.find("ds:KeyInfo", NS)
                etree.SubElement(ki, q("ds", "RetrievalMethod"), URI=canary.url + "/sigkey",
                                 Type="http://www.w3.org/2000/09/xmldsig#X509Data")
        # KeyInfo is outside SignedInfo: adding to it keeps the signatures valid.
        post = forge(saml, cast, after_sign=hook)
        r = saml.post_acs(post)
        assert r.status_code < 500, r.text
        if r.status_code != 303:
            assert 400 <= r.status_code < 500, r.text
    assert canary.requests == [], f"the daemon fetched {canary.requests}"


def test_signature_reference_to_external_uri_is_never_fetched(saml, cast):
    with Canary() as canary:
        def hook(ctx):
            ref = ctx.find("saml:Assertion/ds:Signature/ds:SignedInfo/ds:Reference")
            ref.set("URI", canary.url + "/ref")
        post = forge(saml, cast, sign_response=False, after_sign=hook)
        refused(saml, post, SIGNATURE + ("external", "reference"))
    assert canary.requests == [], f"the daemon fetched {canary.requests}"


def test_xinclude_is_not_processed(saml, cast):
    def hook(ctx):
        v = ctx.attribute_values("displayName")[0]
        inc = etree.SubElement(v, "{http://www.w3.org/2001/XInclude}include",
                               href="file:///etc/passwd", parse="text")
        del inc
    post = forge(saml, cast, before_sign=hook, nameid="mallory-xi-" + secrets.token_hex(2))
    r = saml.post_acs(post)
    assert r.status_code < 500, r.text
    assert not any(m in r.text for m in PASSWD_MARKERS)
    assert not idbtest.tables_containing(saml.db_url, PASSWD_MARKERS[0])


# --------------------------------------------------------------------------
# size and garbage


def test_ten_thousand_group_values(saml, cast):
    groups = [f"g{i:05d}" for i in range(10000)]
    post = forge(saml, cast, nameid="mallory-10k-" + secrets.token_hex(2),
                 attributes={"email": [cast.conn.email("tenk")], "displayName": ["Many"],
                             "memberOf": groups})
    refused(saml, post, ("too-large", "too-many", "attribute", "groups", "large"),
            allow_413=True)


def test_64k_email(saml, cast):
    email = "a" * 65536 + "@" + cast.conn.domain
    post = forge(saml, cast, nameid="mallory-64k-" + secrets.token_hex(2),
                 attributes={"email": [email], "displayName": ["Long"]})
    refused(saml, post, ("too-large", "too-long", "attribute", "email", "large"),
            allow_413=True)


def test_64k_nameid(saml, cast):
    post = forge(saml, cast, nameid="n" * 65536)
    refused(saml, post, ("too-large", "too-long", "subject", "nameid", "large"), allow_413=True)


@pytest.mark.parametrize("form", [
    {},
    {"SAMLResponse": ""},
    {"SAMLResponse": "!!!not base64!!!"},
    {"SAMLResponse": base64.b64encode(b"<not-closed").decode()},
    {"SAMLResponse": base64.b64encode(b"\x00\xff\xfe binary").decode()},
    {"SAMLResponse": base64.b64encode(b"<samlp:AuthnRequest xmlns:samlp='urn:oasis:names:tc:"
                                      b"SAML:2.0:protocol' ID='_1' Version='2.0'/>").decode()},
], ids=["empty-form", "empty-value", "not-base64", "not-xml", "binary", "not-a-response"])
def test_garbage_saml_response(saml, cast, daemon, form):
    r = daemon.post(cast.conn.base + "/acs", data=form, headers=JSON)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.headers.get("Content-Type", "").startswith("application/problem+json")


def test_acs_get_is_not_allowed(saml, cast, daemon):
    r = daemon.get(cast.conn.base + "/acs", headers=JSON)
    assert r.status_code in (400, 405), r.status_code


# --------------------------------------------------------------------------
# RelayState


@pytest.mark.parametrize("relay", ["https://evil.example/steal", "//evil.example/x",
                                   "/\\evil.example/x", "javascript:alert(document.cookie)",
                                   "https://127.0.0.1.evil.example/"])
def test_unsolicited_relay_state_to_another_origin(saml, unsolicited, relay):
    c = unsolicited
    post = c.conn.idp.idp_initiated(c.conn.entity_id, c.mallory_nameid, c.mallory_attrs(),
                                    relay_state=relay)
    r, body, _ = saml.expect_refused(lambda: saml.post_acs(post),
                                     ("relay", "return-to", "redirect", "origin"))
    assert "evil.example" not in r.headers.get("Location", "")


def test_sp_initiated_relay_state_swapped_for_a_url(saml, cast):
    """SP-initiated: the RelayState the SP issued is replaced by a URL."""
    post = forge(saml, cast)
    post.relay_state = "https://evil.example/steal"
    # the daemon no longer knows which request this answers: unsolicited
    r, body, _ = refused(saml, post, ("relay", "in-response-to", "inresponseto", "request",
                                      "return-to", "origin", "unsolicited"))


def test_relay_state_missing_on_sp_initiated_response(saml, cast):
    post = forge(saml, cast)
    post.relay_state = None
    refused(saml, post, ("relay", "in-response-to", "inresponseto", "request", "unsolicited"))
