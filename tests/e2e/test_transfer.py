#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Behaviour 9: outgoing AXFR/IXFR of an enrolled zone.

AXFR, IXFR from serial 0 (answered as AXFR: no journal) and IXFR from the
current serial (the SOA only). allow: served, counted, no module line;
log: served and an info line naming the type served, the client and the
serial; refuse: REFUSED and a line. The ACL allows transfers from
127.0.0.0/8 in every case, so any refusal is the module's.
"""

import re
import unittest

from knotharness import COUNTERS, Config, Knotd, Zone, assert_enforced, main, summary

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

XFRS = ("AXFR", "IXFR=0", "IXFR=%d")  # %d: the zone's current serial
# The type each request is answered (and logged) as: without a journal
# (journal-content: none) IXFR from an older serial falls back to AXFR;
# IXFR from the current serial is an IXFR answered with the SOA only.
SERVED_AS = {"AXFR": "AXFR", "IXFR=0": "AXFR", "IXFR=%d": "IXFR"}


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
        msgs = self.k.kdig(zone, xfr.replace("%d", str(serial)))
        recs = [r for m in msgs for r in m.answer]
        self.assertEqual({m.rcode for m in msgs}, {"NOERROR"},
                         "%s %s: %s" % (zone, xfr, [m.rcode for m in msgs]))
        soas = [r for r in recs if r[2] == "SOA"]
        # A full transfer starts and ends with the SOA.
        self.assertEqual([s[3].split()[2] for s in soas],
                         [str(serial)] * (1 if xfr == "IXFR=%d" else 2), "%s %s" % (zone, xfr))
        if xfr != "IXFR=%d":  # IXFR from the current serial = SOA only
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
        self.assertEqual(sorted(s), sorted(COUNTERS), s)
        self.assertEqual((s["transfers[allowed]"], s["transfers[refused]"]), (3, 0), s)

    def check_log(self, zone, serial):
        mark = self.k.mark()
        lines = []
        for xfr in XFRS:
            m = self.k.mark()
            self.assert_served(zone, xfr, serial)
            self.k.wait_log(prefix(zone), m)
            self.k.settle_log()
            got = self.k.module_lines(m)
            self.assertEqual(len(got), 1, "one line per %s:\n%s" % (xfr, "\n".join(got)))
            self.assertRegex(got[0], r" info: " + prefix(zone) + r"outgoing transfer served, "
                             r"type %s, client 127\.0\.0\.1, serial %d$" %
                             (SERVED_AS[xfr], serial), xfr)
            lines += got
        s = self.k.zone_stats(zone)
        self.assertEqual((s["transfers[allowed]"], s["transfers[refused]"]), (3, 0), s)
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
            msgs = self.k.kdig("xrefuse.test", xfr.replace("%d", "14"))
            self.assertEqual([m.rcode for m in msgs], ["REFUSED"], "%s %s" % (xfr, msgs))
            self.assertEqual([r for m in msgs for r in m.answer], [], xfr)
            self.k.wait_log(prefix("xrefuse.test"), mark)
            self.k.settle_log()
            got = self.k.module_lines(mark)
            self.assertEqual(len(got), 1, "\n".join(got))
            self.assertRegex(got[0], r" info: " + prefix("xrefuse.test") +
                             r"outgoing transfer refused, type %s, client 127\.0\.0\.1, "
                             r"serial 14$" % xfr.split("=")[0], xfr)
            lines += got
        # Normal queries of the zone still work and are enforced.
        assert_enforced(self.k.kdig("xrefuse.test", "MX", tcp=True), "xrefuse.test.",
                        legacy=["mailgate", "smtp.isp.net"])
        s = self.k.zone_stats("xrefuse.test")
        self.assertEqual((s["transfers[refused]"], s["transfers[allowed]"]), (3, 0), s)
        summary("transfer: refuse", lines)

    def test_not_enrolled(self):
        """A zone without the module transfers as usual, no module line."""
        mark = self.k.mark()
        self.assert_served("plain.test", "AXFR", 15)
        self.k.settle_log()
        self.assertEqual(self.k.module_lines(mark), [])
        self.assertEqual(self.k.zone_stats("plain.test"), {})


if __name__ == "__main__":
    main()
