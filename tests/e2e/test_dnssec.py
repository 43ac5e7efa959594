#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Signed zones: the truncation leak path of KNOT-NOTES.md and Behaviour 6.

A signed zone with 19 legacy MX at one name, queried with DO and EDNS
payload 512 over UDP: without care Knot sends TC with all 19 MX (no
ANSWER-stage hook runs). The reply must carry no legacy MX (an empty TC
answer is fine); over TCP the client gets the filtering set with one RRSIG.
The same at every UDP payload from 512 to 1400 bytes, signed or not (an
unsigned zone with 40 legacy MX too); delv validates the enforced answers
(apex, subdomain, compliant set, wildcard, CNAME, synthesized apex).
"""

import unittest

from knotharness import (FILTER_SET, Knotd, Zone, assert_enforced, assert_no_legacy,
                         assert_validated, delv_available, main, summary)

MANY = "\n".join("@ MX %d mx%d.legacy.example." % (i, i) for i in range(1, 20))
BODY = MANY + """
small MX 5 mailgate
small MX 40 smtp.isp.net.
mailgate A 192.0.2.25
ok MX 10 france.security-mail.net.
ok MX 20 europe.security-mail.net.
www A 192.0.2.80
*.wild MX 5 mailgate
alias CNAME small
"""

BIG = "\n".join("@ MX %d mx%d.legacy.example." % (i, i) for i in range(1, 41))

ZONES = [Zone("signed.test", BODY, module="mod-mxfilter",
              extra={"dnssec-signing": "on"}),
         Zone("big.test", BIG, module="mod-mxfilter"),
         Zone("nomx.test", "www A 192.0.2.1", module="mod-mxfilter",
              extra={"dnssec-signing": "on"})]


LEGACY = ("legacy.example", "mailgate", "smtp.isp.net")


def assert_safe(r, what, owner=None, signed=None):
    """The enforced answer, or (UDP, too big) a truncated one that holds no
    MX but the filtering set's and names no legacy exchanger."""
    if r.tc:
        assert_no_legacy(r, LEGACY, what)
        if not set(r.mx()) <= set(FILTER_SET):
            raise AssertionError("%s: legacy MX in a truncated answer\n%s" % (what, r.text()))
    else:
        assert_enforced(r, owner, legacy=LEGACY, signed=signed, what=what)


class Signed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.k = Knotd(ZONES)
        cls.k.start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def test_truncation_leak_udp(self):
        """DO + bufsize 512 over UDP: no legacy MX, TC or filtering set."""
        r = self.k.wire("signed.test", "MX", do=True, bufsize=512)
        assert_safe(r, "UDP reply", "signed.test.", signed=True)
        assert_safe(self.k.kdig("signed.test", "MX", do=True, bufsize=512), "kdig view",
                    "signed.test.", signed=True)
        summary("DO+512 over UDP", r.text().splitlines())

    def test_all_sizes_udp(self):
        """Every payload size from 512 to 1400, with and without DO: the
        reply never holds a legacy MX."""
        seen = set()
        for size in range(512, 1401, 37):
            for do in (True, False):
                r = self.k.wire("signed.test", "MX", do=do, bufsize=size)
                assert_safe(r, "size %d do %s" % (size, do), "signed.test.", signed=do)
                seen.add((r.rcode, r.tc))
        assert_enforced(self.k.wire("signed.test", "MX", edns=False), "signed.test.",
                        legacy=LEGACY, signed=False, what="no EDNS: the set fits 512 bytes")
        self.assertEqual({rc for rc, _ in seen}, {"NOERROR"}, seen)

    def test_unsigned_oversized_legacy_set(self):
        """Unsigned zone, 40 legacy MX (bigger than 512 bytes): at every
        UDP size no legacy MX; where not truncated, the filtering set."""
        for size in [None] + list(range(512, 1401, 37)):
            r = self.k.wire("big.test", "MX", edns=size is not None, bufsize=size or 0)
            assert_safe(r, "size %s" % size, "big.test.")
        assert_enforced(self.k.wire("big.test", "MX", tcp=True), "big.test.", legacy=LEGACY)

    def test_tcp_filtering_set(self):
        """Over TCP with DO: the filtering set with one RRSIG MX, no stale ones."""
        for name in ("signed.test", "small.signed.test"):
            r = self.k.wire(name, "MX", tcp=True, do=True, bufsize=4096)
            assert_enforced(r, name + ".", legacy=LEGACY, signed=True)
            k = self.k.kdig(name, "MX", tcp=True, do=True)
            sigs = [a for a in k.answer if a[2] == "RRSIG" and a[3].startswith("MX ")]
            self.assertEqual(len(sigs), 1, "one RRSIG over the enforced MX\n" + k.text())

    def test_small_set_udp_do(self):
        """A legacy set that fits: DO over UDP answers the signed filtering set."""
        r = self.k.kdig("small.signed.test", "MX", do=True, bufsize=1232)
        assert_enforced(r, "small.signed.test.", legacy=LEGACY, signed=True)

    def test_validating_resolver(self):
        """Behaviour 6: delv with the zone's KSK as trust anchor fully
        validates the enforced answer."""
        if not delv_available():
            self.skipTest("delv not installed")
        anchors = {zone: self.k.trust_anchor(zone) for zone in ("signed.test", "nomx.test")}
        out, bad = [], []
        for zone, name, owner in (("signed.test", "signed.test", None),
                                  ("signed.test", "small.signed.test", None),
                                  ("signed.test", "ok.signed.test", None),
                                  ("signed.test", "x.wild.signed.test", None),
                                  ("signed.test", "alias.signed.test", "small.signed.test."),
                                  ("nomx.test", "nomx.test", None)):
            try:
                assert_validated(self.k.delv(zone, name, anchor=anchors[zone]),
                                 owner or name + ".", legacy=LEGACY, what=name + " MX")
                out.append("%s MX: fully validated, filtering set" % name)
            except AssertionError as e:
                bad.append(str(e))
        summary("delv", out + ["FAILED " + b.splitlines()[0] for b in bad])
        self.assertEqual(bad, [], "delv does not validate the enforced answers")


if __name__ == "__main__":
    main()
