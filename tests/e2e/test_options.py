#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Behaviour 3, 4, 5, 8 and the options: synthesize, scope, null-mx, ttl,
mode audit, a custom exchange set, counters. One knotd, one zone per policy;
a second one for changing `counters` by reload."""

import re
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
    # The defaults but counters: the same shared policy as `mod-mxfilter`.
    {"id": "nocounters", "counters": "off"},
    {"id": "counted", "counters": "on"},
    {"id": "nocounters-audit", "mode": "audit", "counters": "off"},
    {"id": "nocounters-refuse", "transfer": "refuse", "counters": "off"},
]

# Every way a counted answer is reached: apex (PREANSWER), below the apex
# and ANY (ANSWER), a wildcard, a CNAME to a legacy MX.
COUNTED = """
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.5
sub MX 7 mailgate
*.wild MX 8 old.example.
alias CNAME sub
"""

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
    Zone("stats-on.test", COUNTED, module="mod-mxfilter"),
    Zone("stats-off.test", COUNTED, module="mod-mxfilter/nocounters"),
    Zone("stats-on-explicit.test", COUNTED, module="mod-mxfilter/counted"),
    Zone("nostats-synth.test", "www A 192.0.2.1", module="mod-mxfilter/nocounters"),
    Zone("nostats-audit.test", COUNTED, module="mod-mxfilter/nocounters-audit"),
    Zone("nostats-refuse.test", COUNTED, module="mod-mxfilter/nocounters-refuse"),
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

    # -- counters
    def counted_queries(self, zone):
        """Every kind of counted MX answer for ZONE, UDP and TCP; returns the
        number of enforced answers."""
        n = 0
        for name, rtype in ((zone, "MX"), ("sub." + zone, "MX"), ("sub." + zone, "ANY"),
                            ("x.wild." + zone, "MX"), ("alias." + zone, "MX")):
            for what, r in self.both(name, rtype):
                self.assertEqual(r.rcode, "NOERROR", what + "\n" + r.text())
                self.assertEqual(r.mx(), FILTER_SET, "%s %s %s\n%s" % (name, rtype, what,
                                                                        r.text()))
                self.assertEqual(r.records("additional", "A"), [], r.text())
                n += 1
        return n

    def module_stat_lines(self, *args):
        rc, out, err = self.k._knotc_raw("zone-stats", *args)
        return rc, out + err, re.findall(r"(?m)^\[([^\]]+)\] mod-mxfilter\.", out)

    def test_counters_off(self):
        """counters: off: answers enforced and logged exactly as with
        counters, but `knotc zone-stats` shows no mod-mxfilter counter for
        the zone; zones with the default id (the same shared policy) and
        with an explicit `counters: on` keep theirs."""
        mark = self.k.mark()
        n_on = self.k.zone_stats("stats-on.test")
        n_explicit = self.k.zone_stats("stats-on-explicit.test")
        self.assertEqual(len(n_on), 9, n_on)
        self.assertEqual(set(n_explicit), set(n_on), n_explicit)
        d_on = self.delta("stats-on.test", lambda: self.counted_queries("stats-on.test"))
        d_explicit = self.delta("stats-on-explicit.test",
                                lambda: self.counted_queries("stats-on-explicit.test"))
        n = self.counted_queries("stats-off.test")
        for xfr in ("AXFR", "IXFR=0"):
            msgs = self.k.kdig("stats-off.test", xfr)
            self.assertEqual({m.rcode for m in msgs}, {"NOERROR"}, xfr)

        # Counted where counters are on ...
        for d in (d_on, d_explicit):
            self.assertEqual(d.get("enforced"), n, d)
            self.assertGreaterEqual(d.get("blocked[bypass]", 0), n, d)
        # ... and nowhere for the zone without them.
        self.assertEqual(self.k.zone_stats("stats-off.test"), {})
        rc, off_out, zones = self.module_stat_lines("stats-off.test", "mod-mxfilter")
        self.assertEqual(zones, [], off_out)
        # knotc 3.2 says "not exists", 3.4 "invalid parameter".
        self.assertRegex(off_out, r"not exists|invalid parameter",
                         "knotc zone-stats, zone without counters")
        rc, out, zones = self.module_stat_lines("--", "mod-mxfilter.enforced")
        self.assertIn("stats-on.test.", zones, out)
        self.assertIn("stats-on-explicit.test.", zones, out)
        self.assertFalse([z for z in zones if "stats-off" in z or "nostats" in z], out)

        # The audit trail is the same: every legacy record of every path,
        # and the transfers, under the instance's own name.
        pre = PREFIX % r"stats-off\.test" + r"legacy MX blocked, owner %s, preference %d, "
        rx = {"apex 5": pre % (r"stats-off\.test\.", 5),
              "apex 40": pre % (r"stats-off\.test\.", 40),
              "sub": pre % (r"sub\.stats-off\.test\.", 7),
              "wildcard": pre % (r"\*\.wild\.stats-off\.test\.", 8)}
        lines = []
        for what, pattern in rx.items():
            got = self.k.wait_log(pattern, mark)
            self.assertTrue(got, "%s: %s\n%s" % (what, pattern,
                                                  "\n".join(self.k.module_lines(mark))))
            self.assertIn("module 'mod-mxfilter/nocounters', ", got[0])
            lines += got[:1]
        xfr = self.k.wait_log(PREFIX % r"stats-off\.test" + r"outgoing transfer served, "
                              r"type (AXFR|IXFR), client 127\.0\.0\.1, serial 1$", mark, count=2)
        self.assertTrue(xfr, "\n".join(self.k.module_lines(mark)))
        self.assertTrue(self.k.alive())
        summary("counters off", ["%d enforced answers; counters: default id +%d, "
                                 "counters: on +%d, counters: off: none (%s)" % (
                                     n, d_on["enforced"], d_explicit["enforced"],
                                     off_out.strip())] + lines + xfr[:1])

    def test_counters_off_other_paths(self):
        """counters: off with synthesis, audit mode and refused transfers:
        same answers and lines as with counters, no counters."""
        mark = self.k.mark()
        for what, r in self.both("nostats-synth.test"):
            self.assertEqual((r.rcode, r.aa, r.mx()), ("NOERROR", True, FILTER_SET),
                             what + "\n" + r.text())
        for what, r in self.both("nostats-audit.test"):
            self.assertEqual(r.mx(), [(5, "mailgate.nostats-audit.test."),
                                      (40, "smtp.isp.net.")], what + "\n" + r.text())
        msgs = self.k.kdig("nostats-refuse.test", "AXFR")
        self.assertEqual([m.rcode for m in msgs], ["REFUSED"], msgs)
        for what, r in self.both("nostats-refuse.test"):
            self.assertEqual(r.mx(), FILTER_SET, what + "\n" + r.text())
        audit = self.k.wait_log(r" warning: " + PREFIX % r"nostats-audit\.test" +
                                r"legacy MX audit, owner nostats-audit\.test\., "
                                r"preference 5, ", mark)
        refused = self.k.wait_log(PREFIX % r"nostats-refuse\.test" +
                                  r"outgoing transfer refused, type AXFR", mark)
        self.assertTrue(audit and refused, "\n".join(self.k.module_lines(mark)))
        for zone in ("nostats-synth.test", "nostats-audit.test", "nostats-refuse.test"):
            self.assertEqual(self.k.zone_stats(zone), {}, zone)
        self.assertTrue(self.k.alive())

    def test_shared_policy_zones_independent(self):
        """Zones using the default policy do not see each other's data."""
        r = self.k.kdig("inherit.test", "MX")
        self.assertEqual({a[0] for a in r.answer}, {"inherit.test."})
        r = self.k.kdig("synth.test", "MX")
        self.assertEqual({a[0] for a in r.answer}, {"synth.test."})


class CountersReload(unittest.TestCase):
    """`counters` changed by `knotc reload`: the zone's counters come and go
    with the configuration, and answers stay enforced throughout."""

    def test_reload_toggles_counters(self):
        z = Zone("toggle.test", COUNTED, module="mod-mxfilter/toggle")
        k = Knotd([z], mod_mxfilter=[{"id": "toggle", "counters": "off"}])
        seen = []
        with k:
            for counters in ("off", "on", "off"):
                if counters != "off" or seen:
                    k.mod_mxfilter = [{"id": "toggle", "counters": counters}]
                    k.write_conf()
                    k.reload()
                for name in ("toggle.test", "sub.toggle.test"):
                    for tcp in (False, True):
                        r = k.wire(name, "MX", tcp=tcp)
                        self.assertEqual(r.mx(), FILTER_SET, "%s %s\n%s" % (
                            counters, name, r.text()))
                stats = k.zone_stats("toggle.test")
                if counters == "on":
                    self.assertEqual(stats.get("enforced"), 4, stats)
                else:
                    self.assertEqual(stats, {}, "counters: off")
                seen.append("counters: %s -> %s" % (
                    counters, ", ".join("%s = %d" % kv for kv in sorted(stats.items())
                                        if kv[1]) or "no counters"))
            self.assertTrue(k.alive())
        summary("counters by reload", seen)


if __name__ == "__main__":
    main()
