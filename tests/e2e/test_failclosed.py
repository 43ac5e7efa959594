#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Behaviour 7, fail closed: when the module cannot build the enforced
answer the client gets SERVFAIL, never the legacy record, counted as
`failed` and logged at level error, one line per zone and served owner.

- the fault-injection build ($MXFILTER_FAULTY_SO; skipped without it) with
  MXFILTER_FAULT=enomem in knotd's environment: every enforcement fails,
  also synthesis and with `counters: off`; everything else answers;
- the same build with MXFILTER_FAULT=load: the module's setup fails, MX and
  ANY queries of its zones get SERVFAIL, other types are answered;
- the real build on a zone that also runs mod-onlinesign: refused at load,
  the same way.
"""

import re
import unittest

from knotharness import Config, Knotd, Raw, Zone, faulty_module, main, summary

LEGACY = """
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
sub MX 7 mailgate
*.wild MX 8 mailgate
alias CNAME sub
mxonly MX 30 old.example.
compliant MX 10 france.security-mail.net.
compliant MX 20 europe.security-mail.net.
www A 192.0.2.80
"""

ZONES = [
    Zone("legacy.test", LEGACY, module="mod-mxfilter"),
    Zone("empty.test", "www A 192.0.2.1", module="mod-mxfilter"),
    Zone("plain.test", "@ MX 5 mail\nmail A 192.0.2.9"),
    Zone("nostats.test", LEGACY, module="mod-mxfilter/nostats"),
]
POLICIES = [{"id": "nostats", "counters": "off"}]

LEGACY_NAMES = ("mailgate", "smtp.isp.net", "old.example")


def error_owners(k, zone, since=0):
    """The served owners of ZONE's `failed to enforce MX` lines after SINCE
    (one line per owner and minute), in order."""
    k.settle_log()
    out = []
    for l in k.module_lines(since, r"\[%s\.\] .*failed to enforce MX" % re.escape(zone)):
        m = re.search(r" error: \[%s\.\] module 'mod-mxfilter(/\w+)?', failed to enforce MX, "
                      r"owner (\S+), answered SERVFAIL, suppressed \d+ \(not enough memory\)$"
                      % re.escape(zone), l)
        out.append(m.group(2) if m else l)
    return out


class FailClosed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.k = Knotd(Config(ZONES, policies=POLICIES, module=faulty_module()),
                      env={"MXFILTER_FAULT": "enomem"}, allow_module_errors=True)
        cls.k.start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def test_servfail_never_legacy(self):
        """MX answers that need enforcing are SERVFAIL, with no legacy MX,
        over UDP/TCP, with/without EDNS; the failed counter counts them."""
        before = self.k.zone_stats("legacy.test")
        n = 0
        seen = []
        for name, rtype in (("legacy.test", "MX"), ("sub.legacy.test", "MX"),
                            ("X.wIlD.legacy.test", "MX"), ("alias.legacy.test", "MX"),
                            ("mxonly.legacy.test", "ANY")):
            for tcp in (False, True):
                for edns in (True, False):
                    r = self.k.wire(name, rtype, tcp=tcp, edns=edns)
                    n += 1
                    what = "%s %s tcp=%s edns=%s" % (name, rtype, tcp, edns)
                    self.assertEqual(r.rcode, "SERVFAIL", what + "\n" + r.text())
                    for rec in r.all_records():
                        self.assertNotEqual(rec[2], "MX", what + "\n" + r.text())
                        for bad in LEGACY_NAMES:
                            self.assertNotIn(bad, (rec[0] + " " + rec[3]).lower(),
                                             what + "\n" + r.text())
                    seen.append("%s: %s" % (what, r.rcode))
        after = self.k.zone_stats("legacy.test")
        self.assertEqual(after.get("failed", 0) - before.get("failed", 0), n, after)
        self.assertEqual(after.get("enforced", 0) - before.get("enforced", 0), 0, after)
        # Logged at error level, one line per served owner (the wildcard's
        # name for its answers, the CNAME's target): 20 failures, 4 lines.
        self.k.wait_log(r" error: \[legacy\.test\.\] module 'mod-mxfilter", count=4)
        self.assertEqual(sorted(error_owners(self.k, "legacy.test")),
                         ["*.wild.legacy.test.", "legacy.test.", "mxonly.legacy.test.",
                          "sub.legacy.test."], "\n".join(self.k.module_lines()))
        summary("fail closed", seen[:4] + ["... %d queries, failed +%d" % (
            n, after.get("failed", 0) - before.get("failed", 0))] +
            self.k.module_lines(pattern="legacy.test")[:2])

    def test_counters_off_fails_closed(self):
        """counters: off: the same SERVFAIL and error line, nothing counted."""
        mark = self.k.mark()
        for name in ("nostats.test", "sub.nostats.test"):
            for tcp in (False, True):
                r = self.k.wire(name, "MX", tcp=tcp)
                self.assertEqual(r.rcode, "SERVFAIL", name + "\n" + r.text())
                self.assertEqual(r.all_records(), [], r.text())
        self.k.wait_log(r" error: \[nostats\.test\.\] module 'mod-mxfilter/nostats', "
                        r"failed to enforce MX", mark, count=2)
        self.assertEqual(error_owners(self.k, "nostats.test", mark),
                         ["nostats.test.", "sub.nostats.test."],
                         "\n".join(self.k.module_lines(mark)))
        self.assertEqual(self.k.zone_stats("nostats.test"), {})
        self.assertTrue(self.k.alive())

    def test_synthesis_fails_closed(self):
        """An apex MX query that needs synthesis fails as SERVFAIL too."""
        mark = self.k.mark()
        got = []
        d = self.k.stats_delta("empty.test",
                               lambda: got.append(self.k.kdig("empty.test", "MX", tcp=True)))
        r = got[0]
        self.assertEqual(r.rcode, "SERVFAIL", r.text())
        self.assertEqual(r.all_records(), [], r.text())
        self.assertEqual((d["failed"], d["synthesized"]), (1, 0), d)
        self.k.wait_log(r"\[empty\.test\.\] .*failed to enforce MX", mark)
        self.assertEqual(error_owners(self.k, "empty.test", mark), ["empty.test."])

    def test_nothing_else_breaks(self):
        """Non-MX queries, compliant sets and other zones still answer."""
        r = self.k.kdig("www.legacy.test", "A")
        self.assertEqual((r.rcode, r.answer),
                         ("NOERROR", [("www.legacy.test.", 3600, "A", "192.0.2.80")]))
        r = self.k.kdig("compliant.legacy.test", "MX")
        self.assertEqual((r.rcode, r.aa, r.tc), ("NOERROR", True, False), r.text())
        self.assertEqual(r.mx(), [(10, "france.security-mail.net."),
                                  (20, "europe.security-mail.net.")])
        r = self.k.kdig("plain.test", "MX")
        self.assertEqual((r.rcode, r.mx()), ("NOERROR", [(5, "mail.plain.test.")]))


class LoadFailsClosed(unittest.TestCase):
    """A zone whose module cannot be set up (MXFILTER_FAULT=load: the load
    behaves as if memory ran out) is not served without the module: its MX
    and ANY queries get SERVFAIL, everything else is answered."""

    @classmethod
    def setUpClass(cls):
        cls.k = Knotd(Config(ZONES, policies=POLICIES, module=faulty_module()),
                      env={"MXFILTER_FAULT": "load"}, allow_module_errors=True)
        cls.k.start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def test_mx_and_any_servfail(self):
        seen = []
        for name, rtype in (("legacy.test", "MX"), ("sub.legacy.test", "MX"),
                            ("mxonly.legacy.test", "ANY"), ("empty.test", "MX")):
            for tcp in (False, True):
                r = self.k.wire(name, rtype, tcp=tcp)
                what = "%s %s tcp=%s" % (name, rtype, tcp)
                self.assertEqual(r.rcode, "SERVFAIL", what + "\n" + r.text())
                self.assertEqual(r.all_records(), [], what + "\n" + r.text())
                seen.append("%s: %s" % (what, r.rcode))
        r = self.k.kdig("www.legacy.test", "A")
        self.assertEqual((r.rcode, r.answer),
                         ("NOERROR", [("www.legacy.test.", 3600, "A", "192.0.2.80")]))
        r = self.k.kdig("plain.test", "MX")
        self.assertEqual((r.rcode, r.mx()), ("NOERROR", [(5, "mail.plain.test.")]))
        # One line per zone, at load.
        for zone, mod in (("legacy.test", ""), ("empty.test", ""), ("nostats.test", "/nostats")):
            lines = self.k.module_lines(pattern=r"\[%s\.\] " % re.escape(zone))
            self.assertEqual(len(lines), 1, "\n".join(self.k.module_lines()))
            self.assertRegex(lines[0], r" error: \[%s\.\] module 'mod-mxfilter%s', cannot "
                             r"enforce, MX and ANY queries will get SERVFAIL"
                             % (re.escape(zone), mod))
        summary("load fails closed", seen[:3] + self.k.module_lines()[:1])


class OnlinesignRefused(unittest.TestCase):
    """mod-onlinesign and mod-mxfilter on one zone are not supported: the
    module says so at load and fails closed (MX and ANY get SERVFAIL, other
    types are answered), rather than serve answers whose signatures the two
    modules would both touch."""

    def test_onlinesign_zone(self):
        zones = [Zone("os.test", LEGACY,
                      module=Raw("[ mod-onlinesign, mod-mxfilter ]"))]
        with Knotd(zones, allow_module_errors=True) as k:
            for tcp in (False, True):
                r = k.wire("os.test", "MX", tcp=tcp)
                self.assertEqual(r.rcode, "SERVFAIL", r.text())
                self.assertEqual(r.all_records(), [], r.text())
            r = k.kdig("www.os.test", "A")
            self.assertEqual((r.rcode, r.answer),
                             ("NOERROR", [("www.os.test.", 3600, "A", "192.0.2.80")]))
            k.settle_log()
            lines = k.module_lines(pattern=r" (error|critical): ")
            self.assertEqual(len(lines), 1, "\n".join(k.module_lines()))
            self.assertRegex(lines[0], r"error: \[os\.test\.\] module 'mod-mxfilter', cannot "
                             r"enforce, .*mod-onlinesign on the same zone is not supported")
            summary("mod-onlinesign refused", lines)


if __name__ == "__main__":
    main()
