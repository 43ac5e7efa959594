#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Behaviour 7, fail closed: when the module cannot build the enforced
answer the client gets SERVFAIL, never the legacy record.

Uses the fault-injection build ($MXFILTER_FAULTY_SO) loaded with
MXFILTER_FAULT=enomem in knotd's environment: every enforcement fails.
"""

import unittest

from knotharness import Knotd, Raw, Zone, main, module_so, summary

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


class FailClosed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        so = module_so("MXFILTER_FAULTY_SO")
        if so is None:
            raise unittest.SkipTest("MXFILTER_FAULTY_SO not set or missing: the "
                                    "fault-injection build is needed for this test")
        cls.k = Knotd(ZONES, mod_mxfilter=POLICIES, so=so,
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
        lines = self.k.wait_log(r" error: \[legacy\.test\.\] module 'mod-mxfilter")
        self.assertTrue(lines, "failures are logged at error level:\n" +
                        "\n".join(self.k.module_lines()))
        summary("fail closed", seen[:4] + ["... %d queries, failed +%d" % (
            n, after.get("failed", 0) - before.get("failed", 0))] + lines[:2])

    def test_counters_off_fails_closed(self):
        """counters: off: the same SERVFAIL and error line, nothing counted."""
        mark = self.k.mark()
        for name in ("nostats.test", "sub.nostats.test"):
            for tcp in (False, True):
                r = self.k.wire(name, "MX", tcp=tcp)
                self.assertEqual(r.rcode, "SERVFAIL", name + "\n" + r.text())
                self.assertEqual(r.all_records(), [], r.text())
        lines = self.k.wait_log(r" error: \[nostats\.test\.\] module 'mod-mxfilter/nostats', "
                                r"failed to enforce MX", mark)
        self.assertTrue(lines, "\n".join(self.k.module_lines(mark)))
        self.assertEqual(self.k.zone_stats("nostats.test"), {})
        self.assertTrue(self.k.alive())

    def test_synthesis_fails_closed(self):
        """An apex MX query that needs synthesis fails as SERVFAIL too."""
        r = self.k.kdig("empty.test", "MX")
        self.assertIn(r.rcode, ("SERVFAIL",), r.text())
        self.assertEqual(r.answer, [])

    def test_nothing_else_breaks(self):
        """Non-MX queries, compliant sets and other zones still answer."""
        r = self.k.kdig("www.legacy.test", "A")
        self.assertEqual((r.rcode, r.answer),
                         ("NOERROR", [("www.legacy.test.", 3600, "A", "192.0.2.80")]))
        r = self.k.kdig("compliant.legacy.test", "MX")
        self.assertEqual(r.rcode, "NOERROR", r.text())
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
        so = module_so("MXFILTER_FAULTY_SO")
        if so is None:
            raise unittest.SkipTest("MXFILTER_FAULTY_SO not set or missing")
        cls.k = Knotd(ZONES, mod_mxfilter=POLICIES, so=so,
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
        lines = self.k.wait_log(r" error: \[legacy\.test\.\] module 'mod-mxfilter', "
                                r"cannot enforce, MX and ANY queries will get SERVFAIL")
        self.assertTrue(lines, "\n".join(self.k.module_lines()))
        summary("load fails closed", seen[:3] + lines[:1])


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
            lines = k.wait_log(r"error: \[os\.test\.\] module 'mod-mxfilter', cannot "
                               r"enforce, .*mod-onlinesign on the same zone is not supported")
            self.assertTrue(lines, "\n".join(k.module_lines()))
            summary("mod-onlinesign refused", lines[:1])


if __name__ == "__main__":
    main()
