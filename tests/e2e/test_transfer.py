#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Behaviour 9: outgoing AXFR/IXFR of an enrolled zone.

allow: served, no module line; log: served and an info line naming the
client and the serial; refuse: REFUSED and a line. The ACL allows transfers
from 127.0.0.0/8 in every case, so any refusal is the module's.
"""

import re
import unittest

from knotharness import Config, Knotd, Zone, main, summary

LEGACY = """
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
"""

POLICIES = [
    {"id": "allow", "transfer": "allow"},
    {"id": "log", "transfer": "log"},
    {"id": "refuse", "transfer": "refuse"},
]

ZONES = [
    Zone("xallow.test", LEGACY, module="mod-mxfilter/allow", serial=11),
    Zone("xlog.test", LEGACY, module="mod-mxfilter/log", serial=12),
    Zone("xdefault.test", LEGACY, module="mod-mxfilter", serial=13),
    Zone("xrefuse.test", LEGACY, module="mod-mxfilter/refuse", serial=14),
    Zone("plain.test", LEGACY, serial=15),
]

XFRS = ("AXFR", "IXFR=0", "IXFR=1")


def prefix(zone):
    return r"\[%s\.\] module 'mod-mxfilter(/[^']+)?', " % re.escape(zone)


class Transfer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.k = Knotd(Config(ZONES, policies=POLICIES)).start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def assert_served(self, zone, xfr, serial):
        msgs = self.k.kdig(zone, xfr)
        recs = [r for m in msgs for r in m.answer]
        self.assertTrue(all(m.rcode == "NOERROR" for m in msgs),
                        "%s %s: %s" % (zone, xfr, [m.rcode for m in msgs]))
        soas = [r for r in recs if r[2] == "SOA"]
        self.assertTrue(soas, "%s %s: no SOA" % (zone, xfr))
        self.assertEqual(soas[0][3].split()[2], str(serial))
        if xfr != "IXFR=1":  # IXFR from the current serial = SOA only
            # The zone's data travels as it is (the secondary's own
            # mxfilter enforces there).
            mx = sorted(r[3] for r in recs if r[2] == "MX")
            self.assertEqual(mx, ["40 smtp.isp.net.", "5 mailgate.%s." % zone],
                             "%s %s" % (zone, xfr))
        return msgs

    def test_allow(self):
        """allow: AXFR and IXFR served, no module line about it."""
        mark = self.k.mark()
        for xfr in XFRS:
            self.assert_served("xallow.test", xfr, 11)
        self.k.settle_log()
        self.assertEqual(self.k.module_lines(mark), [],
                         "transfer: allow must be silent")
        s = self.k.zone_stats("xallow.test")
        self.assertEqual(s.get("transfers[allowed]"), 3, s)
        self.assertEqual(s.get("transfers[refused]", 0), 0, s)

    def check_log(self, zone, serial):
        mark = self.k.mark()
        lines = []
        for xfr in XFRS:
            m = self.k.mark()
            self.assert_served(zone, xfr, serial)
            got = self.k.wait_log(r" info: " + prefix(zone) + r".*127\.0\.0\.1", m)
            self.assertEqual(len(got), 1, "one info line per %s:\n%s" %
                             (xfr, "\n".join(self.k.module_lines(m))))
            self.assertRegex(got[0], r"\b(AXFR|IXFR)\b", "line names the transfer type")
            self.assertRegex(got[0], r"serial %d\b" % serial, "line names the serial")
            lines += got
        s = self.k.zone_stats(zone)
        self.assertEqual(s.get("transfers[allowed]"), 3, s)
        self.assertEqual(len(self.k.module_lines(mark, "legacy MX")), 0,
                         "a transfer is not an MX answer")
        return lines

    def test_log(self):
        """log: served, one info line naming client and serial."""
        lines = self.check_log("xlog.test", 12)
        summary("transfer: log", lines)

    def test_default_is_log(self):
        """module: mod-mxfilter without id = transfer: log."""
        self.check_log("xdefault.test", 13)

    def test_refuse(self):
        """refuse: REFUSED for AXFR and IXFR, no zone data, a line each."""
        lines = []
        for xfr in XFRS:
            mark = self.k.mark()
            msgs = self.k.kdig("xrefuse.test", xfr)
            self.assertEqual([m.rcode for m in msgs], ["REFUSED"], "%s %s" % (xfr, msgs))
            self.assertEqual([r for m in msgs for r in m.answer], [], xfr)
            got = self.k.wait_log(prefix("xrefuse.test") + r".*127\.0\.0\.1", mark)
            self.assertEqual(len(got), 1, "\n".join(self.k.module_lines(mark)))
            self.assertRegex(got[0], r"(?i)refus")
            lines += got
        # Normal queries of the zone still work and are enforced.
        r = self.k.kdig("xrefuse.test", "MX", tcp=True)
        self.assertEqual(r.mx(), [(10, "france.security-mail.net."),
                                  (20, "europe.security-mail.net.")], r.text())
        s = self.k.zone_stats("xrefuse.test")
        self.assertEqual(s.get("transfers[refused]"), 3, s)
        self.assertEqual(s.get("transfers[allowed]", 0), 0, s)
        summary("transfer: refuse", lines)

    def test_not_enrolled(self):
        """A zone without the module transfers as usual, no module line."""
        mark = self.k.mark()
        self.assert_served("plain.test", "AXFR", 15)
        self.k.settle_log()
        self.assertEqual(self.k.module_lines(mark), [])


if __name__ == "__main__":
    main()
