#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Signed zones: the truncation leak path of KNOT-NOTES.md and Behaviour 6.

A signed zone with 19 legacy MX at one name, queried with DO and EDNS
payload 512 over UDP: without care Knot sends TC with all 19 MX (no
ANSWER-stage hook runs). The reply must carry no legacy MX (an empty TC
answer is fine); over TCP the client gets the filtering set.
"""

import re
import shutil
import subprocess
import unittest

from knotharness import FILTER_SET, Knotd, Zone, main, run, summary

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


def legacy_in(r):
    bad = []
    for rec in r.all_records():
        text = (rec[0] + " " + rec[3]).lower()
        if "legacy.example" in text or "mailgate" in text or "smtp.isp.net" in text:
            bad.append(rec)
        if rec[2] == "MX" and (int(rec[3].split()[0]), rec[3].split()[1].lower()) not in FILTER_SET:
            bad.append(rec)
    return bad


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
        self.assertEqual(legacy_in(r), [], "legacy MX leaked in a UDP reply:\n" + r.text())
        if not r.tc:
            self.assertEqual(r.mx(), FILTER_SET, r.text())
        k = self.k.kdig("signed.test", "MX", do=True, bufsize=512)
        self.assertEqual(legacy_in(k), [], "kdig view:\n" + k.text())
        summary("DO+512 over UDP", r.text().splitlines())

    def test_all_sizes_udp(self):
        """Every payload size from 512 to 1400, with and without DO: the
        reply never holds a legacy MX."""
        seen = set()
        for size in range(512, 1401, 37):
            for do in (True, False):
                r = self.k.wire("signed.test", "MX", do=do, bufsize=size)
                self.assertEqual(legacy_in(r), [], "size %d do %s:\n%s" % (size, do, r.text()))
                if not r.tc:
                    self.assertEqual(r.mx(), FILTER_SET, "size %d do %s:\n%s" % (size, do, r.text()))
                seen.add((r.rcode, r.tc))
        r = self.k.wire("signed.test", "MX", edns=False)
        self.assertEqual(legacy_in(r), [], r.text())
        self.assertEqual(r.mx(), FILTER_SET, "no EDNS: the set fits 512 bytes\n" + r.text())
        self.assertTrue(all(rc == "NOERROR" for rc, _ in seen), seen)

    def test_unsigned_oversized_legacy_set(self):
        """Unsigned zone, 40 legacy MX (bigger than 512 bytes): at every
        UDP size no legacy MX; where not truncated, the filtering set."""
        for size in [None] + list(range(512, 1401, 37)):
            r = self.k.wire("big.test", "MX", edns=size is not None, bufsize=size or 0)
            self.assertEqual(legacy_in(r), [], "size %s:\n%s" % (size, r.text()))
            if not r.tc:
                self.assertEqual(r.mx(), FILTER_SET, "size %s:\n%s" % (size, r.text()))
        r = self.k.wire("big.test", "MX", tcp=True)
        self.assertEqual((r.tc, r.mx()), (False, FILTER_SET), r.text())

    def test_tcp_filtering_set(self):
        """Over TCP with DO: the filtering set with one RRSIG MX, no stale ones."""
        for name in ("signed.test", "small.signed.test"):
            r = self.k.wire(name, "MX", tcp=True, do=True, bufsize=4096)
            self.assertEqual((r.rcode, r.aa, r.tc), ("NOERROR", True, False), r.text())
            self.assertEqual(r.mx(), FILTER_SET, r.text())
            self.assertEqual(legacy_in(r), [], r.text())
            k = self.k.kdig(name, "MX", tcp=True, do=True)
            sigs = [a for a in k.answer if a[2] == "RRSIG" and a[3].startswith("MX ")]
            self.assertEqual(len(sigs), 1, "one RRSIG over the enforced MX\n" + k.text())

    def test_small_set_udp_do(self):
        """A legacy set that fits: DO over UDP answers the signed filtering set."""
        r = self.k.kdig("small.signed.test", "MX", do=True, bufsize=1232)
        self.assertEqual(legacy_in(r), [], r.text())
        self.assertEqual(r.mx(), FILTER_SET, r.text())
        self.assertFalse(r.tc)
        self.assertEqual(r.records("additional", "A"), [], r.text())

    def test_validating_resolver(self):
        """Behaviour 6: delv with the zone's KSK as trust anchor fully
        validates the enforced answer."""
        delv = shutil.which("delv")
        if not delv:
            self.skipTest("delv not installed")
        try:
            anchors = {zone: self.k.trust_anchor(zone) for zone in ("signed.test", "nomx.test")}
            out, bad = [], []
            for zone, name in (("signed.test", "signed.test"),
                               ("signed.test", "small.signed.test"),
                               ("signed.test", "ok.signed.test"),
                               ("signed.test", "x.wild.signed.test"),
                               ("signed.test", "alias.signed.test"),
                               ("nomx.test", "nomx.test")):
                rc, o, e = run([delv, "@127.0.0.1", "-p", str(self.k.port), "-a", anchors[zone],
                                "+root=" + zone, name, "MX"], timeout=30)
                text = o + e
                mx = re.findall(r"^\S+\s+\d+\s+IN\s+MX\s+(\d+)\s+(\S+)", text, re.M)
                mx = sorted((int(p), n.lower()) for p, n in mx)
                if "; fully validated" in text and mx == FILTER_SET:
                    out.append("%s MX: fully validated, filtering set" % name)
                else:
                    bad.append("%s MX:\n%s" % (name, text))
            summary("delv", out + ["FAILED " + b.splitlines()[0] for b in bad])
            self.assertEqual(bad, [], "delv does not validate the enforced answers")
        except subprocess.TimeoutExpired:
            self.fail("delv timed out")


if __name__ == "__main__":
    main()
