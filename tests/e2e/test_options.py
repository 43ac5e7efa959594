#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Behaviour 3, 4, 5, 8 and the options: synthesize, scope, null-mx, ttl,
mode audit, a custom exchange set. One knotd, one zone per policy."""

import unittest

from knotharness import FILTER_SET, Knotd, Zone, main, summary

CUSTOM_SET = [(10, "mx1.filter.example."), (30, "mx2.filter.example.")]

POLICIES = [
    {"id": "nosynth", "synthesize": "off"},
    {"id": "apex", "scope": "apex"},
    {"id": "nullrep", "null-mx": "replace"},
    {"id": "ttl", "ttl": 300},
    {"id": "audit", "mode": "audit"},
    {"id": "custom", "exchange": ["10 mx1.filter.example.", "30 MX2.filter.example"]},
]

ZONES = [
    Zone("synth.test", "www A 192.0.2.1", module="mod-mxfilter"),
    Zone("nosynth.test", "www A 192.0.2.1", module="mod-mxfilter/nosynth"),
    Zone("apex.test", """
        @ MX 5 mailgate
        mailgate A 192.0.2.5
        sub MX 5 mailgate
        sub MX 50 backup.isp.example.
    """, module="mod-mxfilter/apex"),
    Zone("nullkeep.test", "@ MX 0 .\nsub MX 0 .", module="mod-mxfilter"),
    Zone("nullrep.test", "@ MX 0 .", module="mod-mxfilter/nullrep"),
    Zone("nullmix.test", "@ MX 0 .\n@ MX 10 mail\nmail A 192.0.2.10", module="mod-mxfilter"),
    Zone("ttl.test", "@ 7200 MX 5 mailgate\nmailgate A 192.0.2.5", module="mod-mxfilter/ttl"),
    Zone("inherit.test", "@ 7200 MX 5 mailgate\nmailgate A 192.0.2.5", module="mod-mxfilter"),
    Zone("audit.test", """
        @ MX 5 mailgate
        @ MX 40 smtp.isp.net.
        mailgate A 192.0.2.5
    """, module="mod-mxfilter/audit"),
    Zone("tpl-a.test", "@ MX 5 old.example.", template="filtered"),
    Zone("tpl-b.test", "@ MX 20 europe.security-mail.net.\n@ MX 10 france.security-mail.net.",
         template="filtered"),
    Zone("custom.test", """
        @ MX 10 old.example.
        @ MX 25 other.example.
    """, module="mod-mxfilter/custom"),
]

PREFIX = r"\[%s\.\] module 'mod-mxfilter(/[^']+)?', "


class Options(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.k = Knotd(ZONES, mod_mxfilter=POLICIES,
                      templates=[{"id": "filtered", "module": "mod-mxfilter/ttl"}])
        cls.k.start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def both(self, name, rtype="MX", **kw):
        """The same query over UDP and TCP (EDNS on and off)."""
        return [(what, self.k.wire(name, rtype, tcp=tcp, edns=edns, **kw))
                for tcp, edns, what in ((False, True, "UDP"), (True, False, "TCP/no-EDNS"))]

    def delta(self, zone, fn):
        before = self.k.zone_stats(zone)
        fn()
        after = self.k.zone_stats(zone)
        return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}

    # -- synthesize
    def test_synthesize_on(self):
        """Apex MX of a zone without MX: the filtering set, NOERROR, AA."""
        d = self.delta("synth.test", lambda: self.both("synth.test"))
        for what, r in self.both("synth.test"):
            self.assertEqual((r.rcode, r.aa), ("NOERROR", True), what + "\n" + r.text())
            self.assertEqual(r.mx(), FILTER_SET, what + "\n" + r.text())
            self.assertEqual({a[0] for a in r.answer}, {"synth.test."})
        self.assertEqual(d.get("synthesized"), 2, d)
        # Only the apex is synthesized: a name without MX below it stays NODATA.
        r = self.k.kdig("www.synth.test", "MX")
        self.assertEqual((r.rcode, r.answer), ("NOERROR", []), r.text())
        self.assertEqual([a[2] for a in r.authority], ["SOA"], r.text())

    def test_synthesize_off(self):
        """synthesize: off keeps NODATA (NOERROR, AA, SOA in authority)."""
        for what, r in self.both("nosynth.test"):
            self.assertEqual((r.rcode, r.aa, r.answer), ("NOERROR", True, []),
                             what + "\n" + r.text())
            self.assertEqual([a[2] for a in r.authority], ["SOA"], r.text())

    # -- scope
    def test_scope_apex(self):
        """scope apex: apex enforced; legacy below served and logged
        `observed` at notice level."""
        mark = self.k.mark()
        for what, r in self.both("apex.test"):
            self.assertEqual(r.mx(), FILTER_SET, what + "\n" + r.text())
        for what, r in self.both("sub.apex.test"):
            self.assertEqual(r.mx(), [(5, "mailgate.apex.test."), (50, "backup.isp.example.")],
                             what + "\n" + r.text())
        rx = (r" notice: " + PREFIX % r"apex\.test" +
              r"legacy MX observed, owner sub\.apex\.test\., preference %d, exchange %s, "
              r"risk %s, client 127\.0\.0\.1, suppressed \d+$")
        obs5 = self.k.wait_log(rx % (5, r"mailgate\.apex\.test\.", "bypass"), mark)
        obs50 = self.k.wait_log(rx % (50, r"backup\.isp\.example\.", "fallback"), mark)
        self.assertTrue(obs5 and obs50, "\n".join(self.k.module_lines(mark)))
        self.assertTrue(self.k.wait_log(PREFIX % r"apex\.test" + r"legacy MX blocked, owner "
                                        r"apex\.test\., preference 5", mark),
                        "\n".join(self.k.module_lines(mark)))
        summary("scope apex", obs5 + obs50)

    # -- null MX
    def test_null_mx_keep(self):
        """null-mx keep: a lone `0 .` is served as is, not logged."""
        mark = self.k.mark()
        for name in ("nullkeep.test", "sub.nullkeep.test"):
            for what, r in self.both(name):
                self.assertEqual(r.mx(), [(0, ".")], what + "\n" + r.text())
        self.k.settle_log()
        self.assertEqual(self.k.module_lines(mark, "legacy"), [])

    def test_null_mx_replace(self):
        """null-mx replace: `0 .` is legacy, replaced and logged."""
        mark = self.k.mark()
        for what, r in self.both("nullrep.test"):
            self.assertEqual(r.mx(), FILTER_SET, what + "\n" + r.text())
        lines = self.k.wait_log(PREFIX % r"nullrep\.test" + r"legacy MX blocked, owner "
                                r"nullrep\.test\., preference 0, exchange \., risk bypass",
                                mark)
        self.assertTrue(lines, "\n".join(self.k.module_lines(mark)))

    def test_null_mx_in_a_set(self):
        """`0 .` next to another MX is not a null MX: the set is replaced."""
        for what, r in self.both("nullmix.test"):
            self.assertEqual(r.mx(), FILTER_SET, what + "\n" + r.text())
            self.assertEqual(r.records("additional", "A"), [], r.text())

    # -- ttl
    def test_ttl_set(self):
        for what, r in self.both("ttl.test"):
            self.assertEqual(r.mx(), FILTER_SET, r.text())
            self.assertEqual({a[1] for a in r.answer}, {300}, "ttl: 300\n" + r.text())

    def test_ttl_inherited(self):
        for what, r in self.both("inherit.test"):
            self.assertEqual(r.mx(), FILTER_SET, r.text())
            self.assertEqual({a[1] for a in r.answer}, {7200}, "inherited\n" + r.text())

    # -- audit mode
    def test_mode_audit(self):
        """mode audit: data unchanged, warning lines `legacy MX audit`,
        counted as audited, nothing enforced."""
        mark = self.k.mark()
        d = self.delta("audit.test", lambda: self.k.kdig("audit.test", "MX"))
        for what, r in self.both("audit.test"):
            self.assertEqual(r.mx(), [(5, "mailgate.audit.test."), (40, "smtp.isp.net.")],
                             what + "\n" + r.text())
            self.assertEqual(r.records("additional", "A"),
                             [("mailgate.audit.test.", 3600, "A", "192.0.2.5")], r.text())
        rx = (r" warning: " + PREFIX % r"audit\.test" +
              r"legacy MX audit, owner audit\.test\., preference %d, exchange %s, "
              r"risk %s, client 127\.0\.0\.1, suppressed 0$")
        l5 = self.k.wait_log(rx % (5, r"mailgate\.audit\.test\.", "bypass"), mark)
        l40 = self.k.wait_log(rx % (40, r"smtp\.isp\.net\.", "fallback"), mark)
        self.assertTrue(l5 and l40, "\n".join(self.k.module_lines(mark)))
        self.assertEqual(self.k.module_lines(mark, "blocked"), [])
        self.assertEqual(d.get("enforced", 0), 0, d)
        self.assertEqual(sum(v for k, v in d.items() if k.startswith("audited")), 2, d)
        self.assertEqual(sum(v for k, v in d.items() if k.startswith("blocked")), 0, d)
        summary("audit mode", l5 + l40)

    # -- custom set and risk
    def test_custom_exchange_and_risk(self):
        """A configured set replaces the defaults; risk is bypass when the
        preference <= the lowest filtering one (10), fallback above."""
        mark = self.k.mark()
        for what, r in self.both("custom.test"):
            self.assertEqual(r.mx(), CUSTOM_SET, what + "\n" + r.text())
        rx = (PREFIX % r"custom\.test" + r"legacy MX blocked, owner custom\.test\., "
              r"preference %d, exchange %s, risk %s,")
        self.assertTrue(self.k.wait_log(rx % (10, r"old\.example\.", "bypass"), mark),
                        "\n".join(self.k.module_lines(mark)))
        self.assertTrue(self.k.wait_log(rx % (25, r"other\.example\.", "fallback"), mark),
                        "\n".join(self.k.module_lines(mark)))

    def test_template_enrolment(self):
        """Zones enrolled through a template get the template's policy."""
        for what, r in self.both("tpl-a.test"):
            self.assertEqual(r.mx(), FILTER_SET, what + "\n" + r.text())
            self.assertEqual({a[1] for a in r.answer}, {300}, "policy ttl 300\n" + r.text())
        for what, r in self.both("tpl-b.test"):
            self.assertEqual(r.mx(), FILTER_SET, what + "\n" + r.text())
            self.assertEqual({a[1] for a in r.answer}, {3600}, "compliant: untouched\n" + r.text())
        self.assertTrue(self.k.zone_stats("tpl-a.test"), "counters of a template zone")

    def test_shared_policy_zones_independent(self):
        """Zones using the default policy do not see each other's data."""
        r = self.k.kdig("inherit.test", "MX")
        self.assertEqual({a[0] for a in r.answer}, {"inherit.test."})
        r = self.k.kdig("synth.test", "MX")
        self.assertEqual({a[0] for a in r.answer}, {"synth.test."})


if __name__ == "__main__":
    main()
