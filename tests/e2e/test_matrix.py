#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue #14: a systematic matrix of MX answers, and the crash reproducer.

The crash: a PREANSWER answer that held the zone's own MX RRset with its
glue pointer made Knot's additional stage read a node that only
solve_answer sets (module/mxfilter.c, above serve_compliant(), lists what
a PREANSWER answer may hold).

The matrix. Zones are generated per exchange-list layout and zone state;
every zone has its own `mod-mxfilter` id, so that one knotd holds every
layout (the exchangers of each layout are placed relative to its zone):

  layout        zone Z              exchange list
  default       S.default.test      the default set (out of the zone)
  two-tld       S.two.eu            10 mx.S.two.fr.  20 mx.S.two.eu.   (issue #14)
  apexname      S.apexname.eu       10 mx.S.apexname.fr.  20 S.apexname.eu.  (= zone name)
  deep          S.deep.eu           10 mx.S.deep.fr.  20 mail.sub.S.deep.eu.  (below)
  filterdomain  S.fd.net            10 france.S.fd.net.  20 europe.S.fd.net.  (the zone is
                                    the filtering domain; one TLD)
  tld           S-tld.              10 mx.filter.fr.  20 mx.filter.S-tld.  (the zone is the
                                    filtering domain's parent TLD)
  audit         S.audit.eu          as two-tld, mode audit
  apexscope     S.apexscope.eu      as two-tld, scope apex
  signed        S.signed.eu         as two-tld, dnssec-signing on
  provider      security-mail.net   the default set (compliant only: one zone)
  provider-tld  net.                the default set (compliant only: one zone)

S is the zone state, the same at the apex, at `sub` and at `*.wild`:
compliant (the filtering set), partial (its last exchange only), mixed
(the set plus a legacy record), legacy (legacy records only), nomx (no MX;
`sub` and `*.wild` hold an A) and nullmx (`0 .`). Every zone holds A and
AAAA records for each of its in-zone filtering exchangers and for its
legacy exchanger `mail`, a CNAME chain `alias -> alias2 -> sub`, a CNAME
`top -> @` and a delegation `deleg`.

Every zone is asked for MX at the apex, at the apex and at `sub` in 0x20
spelling, at `sub`, at a wildcard name, through both CNAMEs and at the
delegation, over UDP without EDNS, with EDNS 512 and 1232, with and
without DO, and over TCP, the same query (same message ID) to a knotd with
the module and to a reference knotd without it; once with
`answer-rotation: off` and once with `on`. kdig asks every apex once more.
Every case: knotd is alive; where the contract enforces, the answer is the
filtering set (CNAMEs as the reference gives them, AA, owner spelled as
asked, one RRSIG MX for DO in the signed zones), nothing in the reply names
a legacy exchanger and the additional section is empty; everywhere else
the reply is byte for byte the reference's (signed zones: record for
record, signatures compared by covered type).
"""

import os
import unittest

import knotharness
from knotharness import FILTER_SET, Config, Knotd, Zone, assert_enforced, main, summary

STATES = ("compliant", "partial", "mixed", "legacy", "nomx", "nullmx")
LEGACY_OUT = "smtp.isp.example."
ISSUE_EXCHANGES = ["10 mx.filter.fr.", "20 mx.filter.eu."]


def _name(*labels):
    return ".".join(l.strip(".") for l in labels if l.strip(".")) + "."


def _two(s, tag):
    z = _name(s, tag, "eu")
    return z, [(10, _name("mx", s, tag, "fr")), (20, _name("mx", z))]


# layout -> f(state) = (zone, exchanges or None for the default set), options
LAYOUTS = {
    "default": (lambda s: (_name(s, "default", "test"), None), {}),
    "two-tld": (lambda s: _two(s, "two"), {}),
    "apexname": (lambda s: (_name(s, "apexname", "eu"),
                            [(10, _name("mx", s, "apexname", "fr")),
                             (20, _name(s, "apexname", "eu"))]), {}),
    "deep": (lambda s: (_name(s, "deep", "eu"),
                        [(10, _name("mx", s, "deep", "fr")),
                         (20, _name("mail.sub", s, "deep", "eu"))]), {}),
    "filterdomain": (lambda s: (_name(s, "fd", "net"),
                                [(10, _name("france", s, "fd", "net")),
                                 (20, _name("europe", s, "fd", "net"))]), {}),
    "tld": (lambda s: (_name(s + "-tld"),
                       [(10, "mx.filter.fr."), (20, _name("mx.filter", s + "-tld"))]), {}),
    "audit": (lambda s: _two(s, "audit"), {"mode": "audit"}),
    "apexscope": (lambda s: _two(s, "apexscope"), {"scope": "apex"}),
    "signed": (lambda s: _two(s, "signed"), {"signed": True}),
    # The default set's own domain and its TLD: one zone each.
    "provider": (lambda s: ("security-mail.net.", None), {"states": ("compliant", )}),
    "provider-tld": (lambda s: ("net.", None), {"states": ("compliant", )}),
}


def in_zone(name, zone):
    return name == zone or name.endswith("." + zone) or zone == "."


class Case:
    """One generated zone: its data, its policy and what to expect."""

    def __init__(self, layout, state, idx):
        make, opts = LAYOUTS[layout]
        self.layout, self.state = layout, state
        self.zone, ex = make(state)
        self.default_set = ex is None
        self.exchanges = sorted(FILTER_SET if ex is None else ex)
        self.mode = opts.get("mode", "enforce")
        self.scope = opts.get("scope", "zone")
        self.signed = opts.get("signed", False)
        self.mod_id = "m%d" % idx
        self.legacy = [(5, "mail." + self.zone), (40, LEGACY_OUT)]
        self.glue = [n for _, n in self.exchanges if in_zone(n, self.zone)]

    @property
    def domain(self):
        return self.zone.rstrip(".")

    def mx_rdata(self):
        return {"compliant": self.exchanges,
                "partial": self.exchanges[-1:],
                "mixed": self.exchanges + self.legacy[:1],
                "legacy": self.legacy,
                "nomx": [],
                "nullmx": [(0, ".")]}[self.state]

    def body(self):
        lines = []
        for owner in ("@", "sub", "*.wild"):
            rdata = self.mx_rdata()
            for pref, ex in rdata:
                lines.append("%s MX %d %s" % (owner, pref, ex))
            if not rdata and owner != "@":
                lines.append("%s A 192.0.2.80" % owner)
        for i, name in enumerate(self.glue + ["mail." + self.zone]):
            lines.append("%s A 192.0.2.%d" % (name, 10 + i))
            lines.append("%s AAAA 2001:db8::%d" % (name, 10 + i))
        lines += ["alias CNAME alias2", "alias2 CNAME sub", "top CNAME @",
                  "deleg NS ns.deleg", "ns.deleg A 192.0.2.53", "www A 192.0.2.81"]
        return "\n".join(lines)

    def policy(self):
        p = {"id": self.mod_id}
        if not self.default_set:
            p["exchange"] = ["%d %s" % e for e in self.exchanges]
        if self.mode != "enforce":
            p["mode"] = self.mode
        if self.scope != "zone":
            p["scope"] = self.scope
        return p

    def zone_obj(self):
        extra = {"dnssec-signing": "on"} if self.signed else {}
        return Zone(self.domain, self.body(), module="mod-mxfilter/" + self.mod_id, extra=extra)

    def queries(self, salt):
        """(kind, qname as sent, expected MX owner) of every query."""
        z = self.zone
        return [("apex", z, z),
                ("apex-0x20", spell_0x20(z), spell_0x20(z)),
                ("sub", "sub." + z, "sub." + z),
                ("sub-0x20", spell_0x20("sub." + z), spell_0x20("sub." + z)),
                ("wildcard", "Q%s.WiLd.%s" % (salt, z), "Q%s.WiLd.%s" % (salt, z)),
                ("cname-chain", "alias." + z, "sub." + z),
                ("cname-apex", "top." + z, z),
                ("delegation", "deleg." + z, None)]

    def enforced(self, kind):
        """Whether the contract rewrites the answer to this query."""
        if self.mode != "enforce" or kind == "delegation":
            return False
        at_apex = kind in ("apex", "apex-0x20", "cname-apex")
        if self.scope == "apex" and not at_apex:
            return False
        if self.state in ("partial", "mixed", "legacy"):
            return True
        # synthesize: an MX query that reaches the apex, directly or through
        # an in-zone CNAME, gets the set
        return self.state == "nomx" and at_apex


def spell_0x20(name):
    out, up = [], True
    for ch in name:
        if ch.isalpha():
            out.append(ch.upper() if up else ch.lower())
            up = not up
        else:
            out.append(ch)
    return "".join(out)


# Transports: (label, wire_query keywords).
TRANSPORTS = [
    ("udp-noedns", dict(edns=False)),
    ("udp-512", dict(bufsize=512)),
    ("udp-512-do", dict(bufsize=512, do=True)),
    ("udp-1232", dict(bufsize=1232)),
    ("udp-1232-do", dict(bufsize=1232, do=True)),
    ("tcp-noedns", dict(tcp=True, edns=False)),
    ("tcp-1232", dict(tcp=True, bufsize=1232)),
    ("tcp-1232-do", dict(tcp=True, bufsize=1232, do=True)),
]


def cases():
    out = []
    for layout, (_, opts) in LAYOUTS.items():
        for state in opts.get("states", STATES):
            out.append(Case(layout, state, len(out)))
    return out


def names_in(rec):
    """Lower-case names a record mentions (owner, MX/NS/CNAME target)."""
    names = [rec[0].lower()]
    if rec[2] in ("MX", "NS", "CNAME"):
        names.append(rec[3].split()[-1].lower())
    return names


def masked(r):
    """A reply as records, comparable across two servers that sign with
    their own keys (signatures by covered type, denial records by owner)."""
    def sec(recs):
        out = []
        for o, ttl, t, rd in recs:
            if t == "RRSIG":  # wire form "\# LEN HEX" or kdig's text
                rd = "covers " + (rd.split()[2][:4] if rd.startswith("\\#") else rd.split()[0])
            elif t in ("NSEC", "NSEC3", "DNSKEY"):
                rd = "-"
            out.append((o, ttl, t, rd))
        return out
    return (r.rcode, r.aa, r.tc, sec(r.answer), sec(r.authority), sec(r.additional))


class Matrix(knotharness.WithReference):
    """One server pair holding every generated zone."""

    LOG_LEVEL = "info"

    @classmethod
    def setUpClass(cls):
        cls.cases = cases()
        cls.POLICIES = [c.policy() for c in cls.cases]
        super().setUpClass()

    @classmethod
    def zones(cls):
        return [c.zone_obj() for c in cls.cases]

    def ask(self, server, qname, kw, qid):
        try:
            return server.wire(qname, "MX", qid=qid, **kw)
        except (OSError, ValueError) as e:
            alive = "alive" if server.alive() else "DEAD (exit %s)" % server.exit_status
            self.fail("%s %s MX %s: no reply (%s); knotd %s\n%s" %
                      (server.name, qname, kw, e, alive, server.log_text()[-2000:]))

    def check_enforced(self, c, kind, owner, r, ref, what):
        legacy = {n.lower() for _, n in c.legacy}
        for rec in r.all_records():
            self.assertFalse(legacy & set(names_in(rec)), what + ": legacy exchanger named")
        self.assertEqual(r.rcode, "NOERROR", what)
        self.assertTrue(r.aa, what)
        if r.tc:
            # Too big for the UDP payload (signed CNAME chains): a truncated
            # reply may stop anywhere, but holds no other MX.
            self.assertIn("udp", what.split("\n")[0], what + ": TC over TCP")
            self.assertTrue(set(r.mx()) <= set(c.exchanges), what + ": TC")
            return
        self.assertEqual(r.records("answer", "CNAME"), ref.records("answer", "CNAME"),
                         what + ": the CNAMEs as the reference gives them")
        # The filtering set, owner spelled as asked (the CNAME's target as
        # the zone spells it), TTL of the zone's MX, one RRSIG MX for DO in
        # the signed zones.
        assert_enforced(r, None if kind.startswith("cname") else owner, exchanges=c.exchanges,
                        ttl=3600, signed=c.signed and "-do" in what.split("\n")[0],
                        what=what.split("\n")[0])
        if kind.startswith("cname"):
            self.assertEqual({m[0].lower() for m in r.records("answer", "MX")}, {owner.lower()},
                             what + ": owner")
        # No addresses at all (docs/operator-guide.md, "What changes").
        self.assertEqual(r.additional, [], what + ": additional section")
        for rec in r.authority:
            self.assertIn(rec[2], ("NSEC", "NSEC3", "RRSIG"), what + ": authority")

    def check_same(self, c, r, ref, what):
        if c.signed:
            self.assertEqual(masked(r), masked(ref), what)
        else:
            self.assertEqual(r.raw[2:], ref.raw[2:], what)

    def test_matrix(self):
        salt = os.urandom(3).hex()
        qid, counts, alive_checks = 1, {"enforced": 0, "same": 0}, 0
        for c in self.cases:
            for kind, qname, owner in c.queries(salt):
                enforced = c.enforced(kind)
                for tname, kw in TRANSPORTS:
                    qid = (qid % 65000) + 1
                    r = self.ask(self.k, qname, kw, qid)
                    ref = self.ask(self.ref, qname, kw, qid)
                    what = "%s/%s %s %s %s MX id %d%s\n--- module\n%s\n--- reference\n%s" % (
                        c.layout, c.state, kind, tname, qname, qid,
                        " (rotation)" if self.SERVER else "", r.text(), ref.text())
                    if enforced:
                        self.check_enforced(c, kind, owner, r, ref, what)
                        counts["enforced"] += 1
                    else:
                        self.check_same(c, r, ref, what)
                        counts["same"] += 1
            self.assertTrue(self.k.alive(), "knotd died at %s/%s" % (c.layout, c.state))
            alive_checks += 1
        summary(type(self).__name__, [
            "%d zones, %d queries each to both servers: %d enforced, %d identical "
            "to the reference; knotd alive after every zone" %
            (len(self.cases), len(TRANSPORTS) * 8, counts["enforced"], counts["same"])])

    def test_kdig_apex(self):
        """kdig's view of every apex (UDP, no EDNS, as in the issue). kdig
        picks its own message IDs: with rotation on, records are compared
        in any order."""
        order = sorted if self.SERVER else list
        for c in self.cases:
            r = self.k.kdig(c.domain, "MX", edns=False)
            ref = self.ref.kdig(c.domain, "MX", edns=False)
            what = "kdig %s/%s\n%s\n--- reference\n%s" % (c.layout, c.state, r.text(), ref.text())
            self.assertTrue(self.k.alive(), what)
            if c.enforced("apex"):
                assert_enforced(r, c.zone, exchanges=c.exchanges, ttl=3600, what=what)
                self.assertEqual(r.additional, [], what)
            else:
                a, b = masked(r), masked(ref)
                self.assertEqual(a[:3] + tuple(order(x) for x in a[3:]),
                                 b[:3] + tuple(order(x) for x in b[3:]), what)


class MatrixRotation(Matrix):
    """The same with `answer-rotation: on` (Knot orders RRsets by the
    message ID; both servers get the same ID)."""

    SERVER = {"answer-rotation": "on"}


# The zone of the report; "it also crashes for a zone eu. holding mx.filter A".
ISSUE_ZONE = """$ORIGIN {origin}
$TTL 3600
@ SOA ns1 h 1 3600 900 604800 300
@ NS ns1
ns1 A 192.0.2.1
@ MX 10 mx.filter.fr.
@ MX 20 mx.filter.eu.
{glue} A 192.0.2.25
"""


class Issue14Reproducer(unittest.TestCase):
    """The report of issue #14, as filed: one kdig query killed knotd."""

    def start(self, zone, text, module):
        k = Knotd(Config([Zone(zone, text=text, module="mod-mxfilter/p" if module else None)],
                         policies=[{"id": "p", "exchange": ISSUE_EXCHANGES}] if module else None,
                         module=module), name="issue14" if module else "reference")
        k.start()
        self.addCleanup(k.stop)
        return k

    def check(self, zone, text):
        k = self.start(zone, text, True)
        ref = self.start(zone, text, False)
        lines = []
        for how, kw in (("UDP", {}), ("TCP", {"tcp": True}),
                        ("UDP +bufsize=1232", {"bufsize": 1232})):
            r = k.kdig(zone, "MX", edns=False, **kw)
            self.assertTrue(k.alive(), "knotd died on kdig %s MX, %s" % (zone, how))
            want = ref.kdig(zone, "MX", edns=False, **kw)
            self.assertEqual(r.mx(), [(10, "mx.filter.fr."), (20, "mx.filter.eu.")], r.text())
            self.assertEqual((r.rcode, r.aa, r.answer, r.authority, r.additional),
                             (want.rcode, want.aa, want.answer, want.authority,
                              want.additional), "%s\n--- reference\n%s" % (r.text(), want.text()))
            self.assertEqual(r.records("additional", "A"),
                             [("mx.filter.eu.", 3600, "A", "192.0.2.25")], r.text())
            lines.append("kdig %s MX, %s: %s, as the reference, glue kept, knotd alive" %
                         (zone, how, r.rcode))
        summary("issue 14 " + zone, lines)

    def test_filter_eu(self):
        self.check("filter.eu", ISSUE_ZONE.format(origin="filter.eu.", glue="mx"))

    def test_tld_eu(self):
        self.check("eu", ISSUE_ZONE.format(origin="eu.", glue="mx.filter"))


if __name__ == "__main__":
    main()
