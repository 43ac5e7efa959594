#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The seed example of DESIGN.md, as a customer and an operator see it.

your-domain.com still has `MX 5 mailgate.your-domain.com.` and
`MX 40 smtp.isp.net.`; with `module: mod-mxfilter` every client (nslookup,
kdig, dig, a raw client keeping the query's 0x20 spelling) gets the filtering
set only, over UDP and TCP, with and without EDNS, and the operator finds
one audit line per legacy record and the counters.
"""

import re
import unittest

from knotharness import COUNTERS, Knotd, Zone, assert_enforced, dig_available, main, summary

SEED = Zone("your-domain.com", """
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
mailgate AAAA 2001:db8::25
www A 192.0.2.80
""", module="mod-mxfilter")

LEGACY = ("mailgate", "smtp.isp.net")

LINE_RE = (r" notice: \[your-domain\.com\.\] module 'mod-mxfilter(/[^']+)?', "
           r"legacy MX blocked, owner your-domain\.com\., preference %d, "
           r"exchange %s, risk %s, client 127\.0\.0\.1, suppressed 0$")


class Seed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.k = Knotd([SEED])
        cls.k.start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def assert_filtering_answer(self, r, owner, what):
        """The filtering set at OWNER, TTL inherited from the zone's MX, and
        nothing else in the answer."""
        assert_enforced(r, owner, ttl=3600, legacy=LEGACY, what=what)
        self.assertEqual(len(r.answer), 2, "%s: exactly two answers\n%s" % (what, r.text()))

    def test_01_nslookup(self):
        """nslookup -type=mx prints exactly the two filtering lines."""
        rc, out = self.k.nslookup("your-domain.com", "mx")
        self.assertEqual(rc, 0, out)
        lines = [l.strip() for l in out.splitlines() if "mail exchanger" in l]
        self.assertEqual(lines, [
            "your-domain.com\tmail exchanger = 10 france.security-mail.net.",
            "your-domain.com\tmail exchanger = 20 europe.security-mail.net.",
        ], out)
        for bad in LEGACY:
            self.assertNotIn(bad, out)
        summary("nslookup", lines)

    def test_02_kdig_udp_tcp_edns(self):
        """kdig over UDP/TCP, with/without EDNS: AA NOERROR, the two records."""
        for tcp in (False, True):
            for edns in (True, False):
                what = "%s %s" % ("TCP" if tcp else "UDP", "EDNS" if edns else "no EDNS")
                r = self.k.kdig("your-domain.com", "MX", tcp=tcp, edns=edns)
                self.assert_filtering_answer(r, "your-domain.com.", what)
                self.assertEqual(r.opt is not None, edns, what + ": OPT echoed")
                # Raw client: owner keeps the query's 0x20 spelling.
                w = self.k.wire("YoUr-DoMaIn.cOm", "MX", tcp=tcp, edns=edns)
                self.assert_filtering_answer(w, "YoUr-DoMaIn.cOm.", what + " (wire, 0x20)")

    def test_03_plain_kdig_text(self):
        """What a user reads in kdig's normal output."""
        rc, out = self.k.kdig_text("your-domain.com", "MX")
        self.assertEqual(rc, 0, out)
        self.assertIn("status: NOERROR", out)
        self.assertRegex(out, r"Flags: qr aa")
        ans = re.findall(r"^your-domain\.com\.\s+\d+\s+IN\s+MX\s+(.*)$", out, re.M)
        self.assertEqual(sorted(ans), ["10 france.security-mail.net.",
                                       "20 europe.security-mail.net."], out)
        for bad in LEGACY:
            self.assertNotIn(bad, out)

    @unittest.skipUnless(dig_available(), "dig not installed")
    def test_07_dig_keeps_spelling(self):
        """dig (BIND) with a mixed-case name: NOERROR, aa, the two
        filtering records under the name as it was asked."""
        rc, out = self.k.dig("YoUr-DoMaIn.cOm", "MX")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"status: NOERROR")
        self.assertRegex(out, r"flags: qr aa[ ;]")
        answer = out.split(";; ANSWER SECTION:\n")[1].split("\n\n")[0]
        self.assertEqual(sorted(re.findall(r"(?m)^(\S+)\s+(\d+)\s+IN\s+MX\s+(.*)$", answer)),
                         [("YoUr-DoMaIn.cOm.", "3600", "10 france.security-mail.net."),
                          ("YoUr-DoMaIn.cOm.", "3600", "20 europe.security-mail.net.")], out)
        for bad in LEGACY:
            self.assertNotIn(bad, out)
        summary("dig", answer.splitlines())

    def test_04_other_queries_untouched(self):
        """A of the old mail server and www still answer (only MX changes)."""
        r = self.k.kdig("mailgate.your-domain.com", "A")
        self.assertEqual(r.answer, [("mailgate.your-domain.com.", 3600, "A", "192.0.2.25")])
        r = self.k.kdig("www.your-domain.com", "A", tcp=True)
        self.assertEqual(r.answer, [("www.your-domain.com.", 3600, "A", "192.0.2.80")])

    def test_05_audit_lines(self):
        """One notice line per legacy record, exact DESIGN.md format."""
        self.k.kdig("your-domain.com", "MX")
        self.k.wait_log(LINE_RE % (40, r"smtp\.isp\.net\.", "fallback"))
        self.k.settle_log()
        bypass = [l for l in self.k.log_lines() if re.search(
            LINE_RE % (5, r"mailgate\.your-domain\.com\.", "bypass"), l)]
        fallback = [l for l in self.k.log_lines() if re.search(
            LINE_RE % (40, r"smtp\.isp\.net\.", "fallback"), l)]
        mod = self.k.module_lines(pattern="legacy MX")
        self.assertEqual(len(bypass), 1, "bypass line for 5 mailgate:\n" + "\n".join(mod))
        self.assertEqual(len(fallback), 1, "fallback line for 40 smtp.isp.net:\n" + "\n".join(mod))
        # log-interval 60 (default): the many queries of this class gave one
        # line per record, nothing else about legacy MX.
        self.assertEqual(len(mod), 2, "\n".join(mod))
        for l in mod:
            self.assertNotRegex(l, "france|europe", "filtering exchange logged")
        summary("audit trail", bypass + fallback)

    def test_06_counters(self):
        """knotc zone-stats: one more query = one more enforced answer and
        one more blocked record of each risk."""
        before = self.k.zone_stats("your-domain.com")
        self.assertEqual(sorted(before), sorted(COUNTERS), "mod-mxfilter counters in knotc "
                         "zone-stats: %s" % self.k.knotc("-f", "zone-stats", "your-domain.com",
                                                         check=False))
        self.k.kdig("your-domain.com", "MX", tcp=True)
        after = self.k.zone_stats("your-domain.com")
        d = {key: after.get(key, 0) - before.get(key, 0) for key in after}
        self.assertEqual(d.get("enforced"), 1, after)
        self.assertEqual(d.get("blocked[bypass]"), 1, after)
        self.assertEqual(d.get("blocked[fallback]"), 1, after)
        self.assertEqual(after.get("failed", 0), 0, after)
        self.assertEqual(d.get("compliant", 0), 0, after)
        self.assertEqual(d.get("synthesized", 0), 0, after)
        self.assertEqual(after.get("audited", 0), 0, after)
        summary("counters", ["%s = %d" % kv for kv in sorted(after.items())])


if __name__ == "__main__":
    main()
