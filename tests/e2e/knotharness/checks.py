# SPDX-License-Identifier: GPL-3.0-or-later
"""The checks every test makes of an answer the module enforced, written
once (DESIGN.md Behaviour 1, 2, 6). They raise AssertionError, so they
work in a unittest.TestCase and in a plain script alike."""

from .clients import TYPE_NAMES
from .zones import FILTER_SET

# Every counter of the module, as `knotc zone-stats ZONE mod-mxfilter` names
# them (DESIGN.md, Audit trail).
COUNTERS = ("enforced", "synthesized", "blocked[bypass]", "blocked[fallback]", "audited",
            "compliant", "failed", "transfers[allowed]", "transfers[refused]")


def covered(rdata):
    """The type an RRSIG covers, from kdig's text or the wire client's
    `\\# LEN HEX` form."""
    if rdata.startswith("\\#"):
        return TYPE_NAMES.get(int(rdata.split()[2][:4], 16), "?")
    return rdata.split()[0]


def _fail(what, problem, r):
    raise AssertionError("%s%s\n%s" % (what + ": " if what else "", problem, r.text()))


def assert_no_legacy(r, legacy, what=""):
    """No record anywhere in R names any of LEGACY (strings, e.g. the
    zone's old exchangers, matched case-insensitively in owner and rdata)."""
    for rec in r.all_records():
        text = (rec[0] + " " + rec[3]).lower()
        for bad in legacy:
            if bad.lower() in text:
                _fail(what, "legacy name %s in %s" % (bad, rec), r)


def assert_enforced(r, owner=None, *, exchanges=FILTER_SET, ttl=None, legacy=(),
                    aa=True, ad=None, signed=None, any_case=False, what=""):
    """R (a clients.Result) is an answer the module enforced, as a client
    sees it:

    - rcode NOERROR, not truncated; the AA bit set (AA=None: not checked,
      e.g. through a resolver), the AD bit set when AD=True;
    - the MX records of the answer section are exactly EXCHANGES, one RRset:
      one owner, OWNER when given (spelled exactly as given: the wire client
      keeps the server's spelling; ANY_CASE for kdig, which prints a mixed-
      case name lower-case in 3.2, as asked in 3.4 and later), one TTL, TTL
      when given;
    - no MX record in any other section, no address record (A, AAAA) in
      the additional section (an enforced answer carries no exchanger
      addresses at all, docs/operator-guide.md);
    - no record anywhere names one of LEGACY (assert_no_legacy());
    - SIGNED=True: exactly one RRSIG over the MX, at its owner (DO and a
      signed zone); SIGNED=False: none; None: not checked.

    WHAT names the case in the message."""
    if r.rcode != "NOERROR":
        _fail(what, "rcode %s, not NOERROR" % r.rcode, r)
    if r.tc:
        _fail(what, "truncated", r)
    if aa is not None and r.aa != aa:
        _fail(what, "AA %s" % r.aa, r)
    if ad is not None and r.ad != ad:
        _fail(what, "AD %s" % r.ad, r)
    if r.mx() != sorted(exchanges):
        _fail(what, "MX %s, not the filtering set %s" % (r.mx(), sorted(exchanges)), r)
    mx = r.records("answer", "MX")
    spelling = str.lower if any_case else str
    owners = {spelling(m[0]) for m in mx}
    if len(owners) != 1 or (owner is not None and owners != {spelling(owner)}):
        _fail(what, "MX owners %s, want %s" % (sorted(owners), owner or "one"), r)
    ttls = {m[1] for m in mx}
    if len(ttls) != 1 or (ttl is not None and ttls != {ttl}):
        _fail(what, "MX TTLs %s, want %s" % (sorted(ttls), ttl or "one"), r)
    for sec in ("authority", "additional"):
        if r.records(sec, "MX"):
            _fail(what, "MX in the %s section" % sec, r)
    addrs = [a for a in r.additional if a[2] in ("A", "AAAA")]
    if addrs:
        _fail(what, "addresses in the additional section: %s" % addrs, r)
    assert_no_legacy(r, legacy, what)
    if signed is not None:
        rrsigs = [s for s in r.answer if s[2] == "RRSIG" and covered(s[3]) == "MX"]
        if signed and (len(rrsigs) != 1 or spelling(rrsigs[0][0]) not in owners):
            _fail(what, "want one RRSIG over the MX at %s, got %s" % (owners, rrsigs), r)
        if not signed and rrsigs:
            _fail(what, "RRSIG over the MX without DNSSEC: %s" % rrsigs, r)


def assert_validated(d, owner=None, *, exchanges=FILTER_SET, legacy=(), what=""):
    """D (a clients.Delv) is delv's `; fully validated` answer with exactly
    EXCHANGES as MX (at OWNER, any case, when given) and nothing naming one
    of LEGACY in delv's whole output."""
    want = sorted(exchanges)
    if not d.validated or d.mx(owner=owner) != want or d.mx() != want:
        _fail(what, "want a fully validated %s%s" % (want, " at " + owner if owner else ""), d)
    for bad in legacy:
        if bad.lower() in d.output.lower():
            _fail(what, "legacy name %s in delv's output" % bad, d)
    if not [s for s in d.answer if s[2] == "RRSIG" and covered(s[3]) == "MX"]:
        _fail(what, "delv shows no RRSIG over the MX", d)
