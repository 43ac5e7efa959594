#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Behaviour 1, 2 and 10: every path an MX reaches a client by.

One knotd with the module (zone enrolled + a non-enrolled zone) and one
knotd without the module serving the same data, for comparison; again
with `answer-rotation: on`.
"""

import os

import knotharness
from knotharness import FILTER_SET, Zone, assert_enforced, main, summary

BODY = """
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
mailgate AAAA 2001:db8::25
sub MX 5 mailgate
sub MX 15 relay.sub
relay.sub A 192.0.2.26
*.wild MX 5 mailgate
alias CNAME alias2
alias2 CNAME host
host MX 7 mailgate
host A 192.0.2.30
mxonly MX 30 old.example.
compliant 1234 MX 20 EUROPE.security-mail.net.
compliant 1234 MX 10 France.Security-Mail.NET.
www A 192.0.2.80
www AAAA 2001:db8::80
txt TXT "v=spf1 mx -all"
ext CNAME mail.elsewhere.example.
subset MX 10 france.security-mail.net.
superset MX 10 france.security-mail.net.
superset MX 20 europe.security-mail.net.
superset MX 30 backup.isp.example.
wrongpref MX 5 france.security-mail.net.
wrongpref MX 20 europe.security-mail.net.
dn DNAME tgt.your-domain.com.
x.tgt MX 5 mailgate
walias CNAME foo.wild
child NS ns1.child
ns1.child A 192.0.2.53
"""

CHILD_BODY = """
@ MX 5 mailgate
mailgate A 192.0.2.77
"""

PLAIN_BODY = """
@ MX 5 mail
mail A 192.0.2.99
"""

LEGACY = ("mailgate", "smtp.isp.net", "relay.sub", "old.example", "backup.isp.example")


# The filtering service's own zone, enrolled and compliant, with the
# exchangers' addresses in the zone (Knot adds them as glue).
CONFORMS_BODY = """
@ 7200 MX 10 france
@ 7200 MX 20 europe
france A 192.0.2.10
europe A 192.0.2.20
europe AAAA 2001:db8::20
sub 7200 MX 10 france
sub 7200 MX 20 europe
"""
GLUE = [("europe.security-mail.net.", "A"), ("europe.security-mail.net.", "AAAA"),
        ("france.security-mail.net.", "A")]


class WithReference(knotharness.WithReference):
    """knotd with the module (self.k) and a reference knotd without it
    (self.ref), serving these zones with the same `server:` items."""

    @classmethod
    def zones(cls):
        return [Zone("your-domain.com", BODY, module="mod-mxfilter"),
                Zone("plain.test", PLAIN_BODY),
                Zone("child.your-domain.com", CHILD_BODY),
                Zone("security-mail.net", CONFORMS_BODY, module="mod-mxfilter")]


class Answers(WithReference):
    def variants(self):
        for tcp in (False, True):
            for edns in (True, False):
                yield tcp, edns, "%s/%s" % ("TCP" if tcp else "UDP",
                                            "EDNS" if edns else "no-EDNS")

    def assert_enforced(self, r, owner, what):
        """The filtering set at OWNER (spelled as asked), the TTL of the
        zone's MX, no legacy exchanger."""
        assert_enforced(r, owner, ttl=3600, legacy=LEGACY, what=what)

    def test_apex(self):
        for tcp, edns, what in self.variants():
            self.assert_enforced(self.k.wire("your-domain.com", "MX", tcp=tcp, edns=edns),
                                 "your-domain.com.", "apex " + what)

    def test_subdomain(self):
        """qtype MX below the apex; in-zone glue of legacy exchangers gone."""
        for tcp, edns, what in self.variants():
            r = self.k.wire("sub.your-domain.com", "MX", tcp=tcp, edns=edns)
            self.assert_enforced(r, "sub.your-domain.com.", "subdomain " + what)
            self.assertEqual(r.additional, [], "subdomain %s: additional\n%s" % (what, r.text()))

    def test_wildcard_0x20(self):
        """Wildcard-synthesized MX; owner keeps the query's 0x20 spelling."""
        label = "Q%sx" % os.urandom(4).hex()
        for tcp, edns, what in self.variants():
            for qname in ("WwW.WiLd.your-domain.com", label + ".wIlD.YOUR-domain.COM"):
                r = self.k.wire(qname, "MX", tcp=tcp, edns=edns)
                self.assert_enforced(r, qname + ".", "wildcard %s %s" % (qname, what))
        name = "random-%s.wild.your-domain.com." % os.urandom(3).hex()
        self.assert_enforced(self.k.kdig(name, "MX"), name, "wildcard kdig")

    def test_cname_chain(self):
        """alias -> alias2 -> host (legacy MX): CNAMEs kept, MX replaced."""
        for tcp, edns, what in self.variants():
            r = self.k.wire("alias.your-domain.com", "MX", tcp=tcp, edns=edns)
            cn = r.records("answer", "CNAME")
            self.assertEqual([(c[0], c[3]) for c in cn],
                             [("alias.your-domain.com.", "alias2.your-domain.com."),
                              ("alias2.your-domain.com.", "host.your-domain.com.")],
                             "CNAME chain %s\n%s" % (what, r.text()))
            self.assert_enforced(r, "host.your-domain.com.", "CNAME chain " + what)
            self.assertEqual([a[2] for a in r.answer], ["CNAME", "CNAME", "MX", "MX"],
                             "CNAMEs come first\n" + r.text())

    def test_dname_and_cname_to_wildcard(self):
        """DNAME-synthesized CNAME into the zone, and a CNAME to a wildcard
        name: the MX at the end of the chain is replaced."""
        for tcp, edns, what in self.variants():
            r = self.k.wire("X.dn.your-domain.com", "MX", tcp=tcp, edns=edns)
            self.assertEqual([a[2] for a in r.answer], ["DNAME", "CNAME", "MX", "MX"],
                             "DNAME %s\n%s" % (what, r.text()))
            self.assert_enforced(r, "x.tgt.your-domain.com.", "DNAME " + what)
            r = self.k.wire("walias.your-domain.com", "MX", tcp=tcp, edns=edns)
            self.assertEqual(r.records("answer", "CNAME"),
                             [("walias.your-domain.com.", 3600, "CNAME",
                               "foo.wild.your-domain.com.")], r.text())
            self.assert_enforced(r, "foo.wild.your-domain.com.", "CNAME->wildcard " + what)

    def test_any_mx_only_node(self):
        """ANY at a name holding only MX answers the filtering set."""
        for tcp, edns, what in self.variants():
            r = self.k.wire("mxonly.your-domain.com", "ANY", tcp=tcp, edns=edns)
            self.assert_enforced(r, "mxonly.your-domain.com.", "ANY " + what)

    def test_compliant_untouched(self):
        """A compliant set in other case/order: byte-identical to the
        server without the module (TTL 1234 kept), and no log line."""
        mark = self.k.mark()
        for tcp, edns, what in self.variants():
            r = self.k.wire("compliant.your-domain.com", "MX", tcp=tcp, edns=edns)
            ref = self.ref.wire("compliant.your-domain.com", "MX", tcp=tcp, edns=edns)
            self.assertEqual(r.mx(), FILTER_SET, r.text())
            self.assertEqual({a[1] for a in r.answer}, {1234}, "TTL kept\n" + r.text())
            self.assertEqual(r.raw[2:], ref.raw[2:],
                             "compliant %s differs from the reference\n%s\n%s" %
                             (what, r.text(), ref.text()))
        self.k.settle_log()
        self.assertEqual(self.k.module_lines(mark, "legacy MX"), [])

    def test_compliant_verbatim(self):
        """The filtering service's own zone, compliant as the policy writes
        it (which the module may answer itself, from the policy's wire
        image): every answer byte-identical to the server without the
        module, glue and DNSSEC OK bit included, counted compliant, no log
        line."""
        mark = self.k.mark()
        before = self.k.zone_stats("security-mail.net").get("compliant", 0)
        asked = 0
        for name in ("security-mail.net", "SeCuRiTy-MaIl.NeT", "sub.security-mail.net",
                     "SUB.Security-Mail.net"):
            for tcp, edns, what in self.variants():
                for do in ((False, True) if edns else (False,)):
                    r = self.k.wire(name, "MX", tcp=tcp, edns=edns, do=do)
                    ref = self.ref.wire(name, "MX", tcp=tcp, edns=edns, do=do)
                    asked += 1
                    self.assertEqual(r.mx(), FILTER_SET, r.text())
                    self.assertTrue(r.aa, r.text())
                    self.assertEqual({a[1] for a in r.answer}, {7200}, "TTL kept\n" + r.text())
                    self.assertEqual(r.raw[2:], ref.raw[2:], "%s %s DO=%s\n%s\n--- reference\n%s"
                                     % (name, what, do, r.text(), ref.text()))
                    if edns:
                        # Knot's glue, which the module leaves alone here.
                        self.assertEqual(sorted((a[0].lower(), a[2]) for a in r.additional),
                                         GLUE, "glue\n" + r.text())
        self.k.settle_log()
        self.assertEqual(self.k.module_lines(mark, "legacy MX"), [])
        after = self.k.zone_stats("security-mail.net").get("compliant", 0)
        self.assertEqual(after - before, asked)

    def test_partial_sets(self):
        """A subset, a superset and a wrong preference are not compliant:
        replaced; only the records outside the filtering set are logged."""
        mark = self.k.mark()

        def ask():
            for name in ("subset", "superset", "wrongpref"):
                for tcp, edns, what in self.variants():
                    r = self.k.wire(name + ".your-domain.com", "MX", tcp=tcp, edns=edns)
                    self.assert_enforced(r, name + ".your-domain.com.", name + " " + what)
        d = self.k.stats_delta("your-domain.com", ask)
        self.k.settle_log()
        lines = self.k.module_lines(mark, "legacy MX")
        sup = [l for l in lines if "owner superset." in l]
        self.assertEqual(len(sup), 1, "\n".join(lines))
        self.assertRegex(sup[0], r"preference 30, exchange backup\.isp\.example\., risk fallback,")
        wp = [l for l in lines if "owner wrongpref." in l]
        self.assertEqual(len(wp), 1, "\n".join(lines))
        self.assertRegex(wp[0], r"preference 5, exchange france\.security-mail\.net\., risk bypass,")
        self.assertEqual([l for l in lines if "owner subset." in l], [],
                         "a subset has no legacy record to name")
        # Every answer enforced; the superset blocks 30 backup (fallback),
        # the wrong preference 5 france (bypass), per answer.
        n = 3 * len(list(self.variants()))
        self.assertEqual((d["enforced"], d["blocked[bypass]"], d["blocked[fallback]"]),
                         (n, n // 3, n // 3), d)

    def test_child_zone_not_enrolled(self):
        """A child zone on the same server, not enrolled, is its own zone:
        its MX is served untouched even though the parent is enrolled."""
        for tcp, edns, what in self.variants():
            r = self.k.wire("child.your-domain.com", "MX", tcp=tcp, edns=edns)
            ref = self.ref.wire("child.your-domain.com", "MX", tcp=tcp, edns=edns)
            self.assertEqual(r.mx(), [(5, "mailgate.child.your-domain.com.")], r.text())
            self.assertEqual(r.raw[2:], ref.raw[2:], what)

    def test_not_enrolled_untouched(self):
        """A zone without the module keeps its MX, byte for byte."""
        mark = self.k.mark()
        for tcp, edns, what in self.variants():
            r = self.k.wire("plain.test", "MX", tcp=tcp, edns=edns)
            ref = self.ref.wire("plain.test", "MX", tcp=tcp, edns=edns)
            self.assertEqual(r.mx(), [(5, "mail.plain.test.")], r.text())
            self.assertEqual(r.raw[2:], ref.raw[2:], "plain.test %s\n%s\n%s" %
                             (what, r.text(), ref.text()))
        self.k.settle_log()
        self.assertEqual(self.k.module_lines(mark), [])

    def test_non_mx_untouched(self):
        """A, AAAA, TXT, NS, SOA, NXDOMAIN, NODATA, out-of-zone CNAME and
        the A of the old mail server: same bytes as without the module."""
        queries = [("www.your-domain.com", "A"), ("www.your-domain.com", "AAAA"),
                   ("txt.your-domain.com", "TXT"), ("your-domain.com", "NS"),
                   ("your-domain.com", "SOA"), ("mailgate.your-domain.com", "A"),
                   ("nope.your-domain.com", "A"), ("nope.your-domain.com", "MX"),
                   ("www.your-domain.com", "TXT"), ("ext.your-domain.com", "A"),
                   ("host.your-domain.com", "A"), ("alias.your-domain.com", "A"),
                   ("x.wild.your-domain.com", "A"), ("plain.test", "A")]
        checked = []
        for name, rtype in queries:
            for tcp, edns, what in self.variants():
                r = self.k.wire(name, rtype, tcp=tcp, edns=edns)
                ref = self.ref.wire(name, rtype, tcp=tcp, edns=edns)
                self.assertEqual(r.raw[2:], ref.raw[2:], "%s %s %s\n%s\n--- reference\n%s" %
                                 (name, rtype, what, r.text(), ref.text()))
            # kdig's view: identical answer sections.
            a = self.k.kdig(name, rtype)
            b = self.ref.kdig(name, rtype)
            self.assertEqual((a.rcode, a.aa, a.answer, a.authority, a.additional),
                             (b.rcode, b.aa, b.answer, b.authority, b.additional),
                             "%s %s kdig" % (name, rtype))
            checked.append("%s %s %s: identical" % (name, rtype, a.rcode))
        summary("non-MX untouched", checked)

    def test_additional_cleaned(self):
        """No A/AAAA of a blocked exchanger anywhere in the reply."""
        for name, owner in (("your-domain.com", None), ("sub.your-domain.com", None),
                            ("host.your-domain.com", None),
                            ("alias.your-domain.com", "host.your-domain.com."),
                            ("x.wild.your-domain.com", None)):
            r = self.k.kdig(name, "MX", bufsize=4096)
            self.assert_enforced(r, owner or name + ".", name)


class AnswerRotation(WithReference):
    """With `answer-rotation: on` Knot orders an RRset by the query's
    message ID. A zone already holding the filtering set is then served by
    Knot itself (rotated, byte-identical to a server without the module);
    the enforced set keeps one order."""

    SERVER = {"answer-rotation": "on"}

    def test_compliant_rotates(self):
        orders = set()
        for qid in (2, 3, 4, 5):
            r = self.k.wire("security-mail.net", "MX", qid=qid)
            ref = self.ref.wire("security-mail.net", "MX", qid=qid)
            self.assertEqual(r.raw, ref.raw, "ID %d\n%s\n--- reference\n%s"
                             % (qid, r.text(), ref.text()))
            orders.add(tuple(a[3] for a in r.answer))
        self.assertEqual(len(orders), 2, "Knot rotates the zone's own set: %s" % orders)

    def test_enforced_fixed_order(self):
        orders = set()
        for qid in (2, 3, 4, 5):
            r = self.k.wire("your-domain.com", "MX", qid=qid)
            assert_enforced(r, "your-domain.com.", ttl=3600, legacy=LEGACY, what="ID %d" % qid)
            orders.add(tuple(a[3] for a in r.answer))
        self.assertEqual(len(orders), 1, orders)


if __name__ == "__main__":
    main()
