#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Behaviour 3, 4, 5, 8 and the options: synthesize, scope, null-mx, ttl,
mode audit, a custom exchange set, counters. One knotd, one zone per policy;
a second one for changing `counters` by reload."""

import re
import unittest

from knotharness import (COUNTERS, FILTER_SET, Config, Knotd, Zone, assert_enforced, main,
                         summary)

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
        cls.k = Knotd(Config(ZONES, policies=POLICIES,
                             templates=[{"id": "filtered", "module": "mod-mxfilter/ttl"}]))
        cls.k.start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def both(self, name, rtype="MX", **kw):
        """The same query over UDP and TCP (EDNS on and off)."""
        return [(what, self.k.wire(name, rtype, tcp=tcp, edns=edns, **kw))
                for tcp, edns, what in ((False, True, "UDP"), (True, False, "TCP/no-EDNS"))]

    def delta(self, zone, fn):
        return self.k.stats_delta(zone, fn)

    def one_line(self, pattern, since):
        """The only line after SINCE matching PATTERN (one per record and
        interval, however many answers)."""
        self.k.wait_log(pattern, since)
        self.k.settle_log()
        lines = [l for l in self.k.log_lines(since) if re.search(pattern, l)]
        self.assertEqual(len(lines), 1, "%s\n%s" % (pattern,
                                                    "\n".join(self.k.module_lines(since))))
        return lines

    # -- synthesize
    def test_synthesize_on(self):
        """Apex MX of a zone without MX: the filtering set, NOERROR, AA."""
        d = self.delta("synth.test", lambda: self.both("synth.test"))
        for what, r in self.both("synth.test"):
            assert_enforced(r, "synth.test.", what=what)
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
            assert_enforced(r, "apex.test.", legacy=["mailgate"], what=what)
        for what, r in self.both("sub.apex.test"):
            self.assertEqual(r.mx(), [(5, "mailgate.apex.test."), (50, "backup.isp.example.")],
                             what + "\n" + r.text())
        rx = (r" notice: " + PREFIX % r"apex\.test" +
              r"legacy MX observed, owner sub\.apex\.test\., preference %d, exchange %s, "
              r"risk %s, client 127\.0\.0\.1, suppressed \d+$")
        obs5 = self.one_line(rx % (5, r"mailgate\.apex\.test\.", "bypass"), mark)
        obs50 = self.one_line(rx % (50, r"backup\.isp\.example\.", "fallback"), mark)
        self.one_line(PREFIX % r"apex\.test" + r"legacy MX blocked, owner apex\.test\., "
                      r"preference 5", mark)
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
            assert_enforced(r, "nullrep.test.", what=what)
        self.one_line(PREFIX % r"nullrep\.test" + r"legacy MX blocked, owner "
                      r"nullrep\.test\., preference 0, exchange \., risk bypass", mark)

    def test_null_mx_in_a_set(self):
        """`0 .` next to another MX is not a null MX: the set is replaced."""
        for what, r in self.both("nullmix.test"):
            assert_enforced(r, "nullmix.test.", legacy=["mail.nullmix"], what=what)

    # -- ttl
    def test_ttl_set(self):
        for what, r in self.both("ttl.test"):
            assert_enforced(r, "ttl.test.", ttl=300, legacy=["mailgate"], what="ttl: 300")

    def test_ttl_inherited(self):
        for what, r in self.both("inherit.test"):
            assert_enforced(r, "inherit.test.", ttl=7200, legacy=["mailgate"], what="inherited")

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
        l5 = self.one_line(rx % (5, r"mailgate\.audit\.test\.", "bypass"), mark)
        l40 = self.one_line(rx % (40, r"smtp\.isp\.net\.", "fallback"), mark)
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
            assert_enforced(r, "custom.test.", exchanges=CUSTOM_SET,
                            legacy=["old.example", "other.example"], what=what)
        rx = (PREFIX % r"custom\.test" + r"legacy MX blocked, owner custom\.test\., "
              r"preference %d, exchange %s, risk %s,")
        self.one_line(rx % (10, r"old\.example\.", "bypass"), mark)
        self.one_line(rx % (25, r"other\.example\.", "fallback"), mark)

    def test_template_enrolment(self):
        """Zones enrolled through a template get the template's policy."""
        d = self.delta("tpl-a.test", lambda: [
            assert_enforced(r, "tpl-a.test.", ttl=300, legacy=["old.example"],
                            what="policy ttl 300, " + what)
            for what, r in self.both("tpl-a.test")])
        self.assertEqual(sorted(d), sorted(COUNTERS), "counters of a template zone")
        self.assertEqual((d["enforced"], d["blocked[bypass]"]), (2, 2), d)
        d = self.delta("tpl-b.test", lambda: [
            self.assertEqual((r.mx(), {a[1] for a in r.answer}), (FILTER_SET, {3600}),
                             "compliant: untouched\n" + r.text())
            for what, r in self.both("tpl-b.test")])
        self.assertEqual((d["compliant"], d["enforced"]), (2, 0), d)

    # -- counters
    def counted_queries(self, zone):
        """Every kind of counted MX answer for ZONE, UDP and TCP; returns the
        number of enforced answers."""
        n = 0
        for name, rtype in ((zone, "MX"), ("sub." + zone, "MX"), ("sub." + zone, "ANY"),
                            ("x.wild." + zone, "MX"), ("alias." + zone, "MX")):
            for what, r in self.both(name, rtype):
                assert_enforced(r, legacy=["mailgate", "old.example", "smtp.isp.net"],
                                what="%s %s %s" % (name, rtype, what))
                n += 1
        return n

    def module_stat_lines(self, *args):
        out = self.k.knotc("zone-stats", *args, check=False)
        return out, re.findall(r"(?m)^\[([^\]]+)\] mod-mxfilter\.", out)

    def test_counters_off(self):
        """counters: off: answers enforced and logged exactly as with
        counters, but `knotc zone-stats` shows no mod-mxfilter counter for
        the zone; zones with the default id (the same shared policy) and
        with an explicit `counters: on` keep theirs."""
        mark = self.k.mark()
        n_on = self.k.zone_stats("stats-on.test")
        n_explicit = self.k.zone_stats("stats-on-explicit.test")
        self.assertEqual(sorted(n_on), sorted(COUNTERS), n_on)
        self.assertEqual(set(n_explicit), set(n_on), n_explicit)
        d_on = self.delta("stats-on.test", lambda: self.counted_queries("stats-on.test"))
        d_explicit = self.delta("stats-on-explicit.test",
                                lambda: self.counted_queries("stats-on-explicit.test"))
        n = self.counted_queries("stats-off.test")
        for xfr in ("AXFR", "IXFR=0"):
            msgs = self.k.kdig("stats-off.test", xfr)
            self.assertEqual({m.rcode for m in msgs}, {"NOERROR"}, xfr)

        # Counted where counters are on: every answer blocks one bypass
        # record (5, 7, 7, 8, 7), the apex's (1 in 5) 40 smtp.isp.net too.
        for d in (d_on, d_explicit):
            self.assertEqual((d["enforced"], d["blocked[bypass]"], d["blocked[fallback]"]),
                             (n, n, n // 5), d)
        # ... and nowhere for the zone without them.
        self.assertEqual(self.k.zone_stats("stats-off.test"), {})
        off_out, zones = self.module_stat_lines("stats-off.test", "mod-mxfilter")
        self.assertEqual(zones, [], off_out)
        # knotc 3.2 says "not exists", 3.4 "invalid parameter".
        self.assertRegex(off_out, r"not exists|invalid parameter",
                         "knotc zone-stats, zone without counters")
        out, zones = self.module_stat_lines("--", "mod-mxfilter.enforced")
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
            got = self.one_line(pattern, mark)
            self.assertIn("module 'mod-mxfilter/nocounters', ", got[0], what)
            lines += got
        xfr_re = PREFIX % r"stats-off\.test" + r"outgoing transfer served, " \
            r"type (AXFR|IXFR), client 127\.0\.0\.1, serial 1$"
        self.k.wait_log(xfr_re, mark, count=2)
        self.k.settle_log()
        xfr = [l for l in self.k.log_lines(mark) if re.search(xfr_re, l)]
        # Without a journal, IXFR=0 is answered (and logged) as AXFR.
        self.assertEqual([re.search(r"type (\S+),", l).group(1) for l in xfr],
                         ["AXFR", "AXFR"], "\n".join(self.k.module_lines(mark)))
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
            assert_enforced(r, "nostats-synth.test.", what=what)
        for what, r in self.both("nostats-audit.test"):
            self.assertEqual(r.mx(), [(5, "mailgate.nostats-audit.test."),
                                      (40, "smtp.isp.net.")], what + "\n" + r.text())
        msgs = self.k.kdig("nostats-refuse.test", "AXFR")
        self.assertEqual([m.rcode for m in msgs], ["REFUSED"], msgs)
        for what, r in self.both("nostats-refuse.test"):
            assert_enforced(r, "nostats-refuse.test.", legacy=["mailgate"], what=what)
        self.one_line(r" warning: " + PREFIX % r"nostats-audit\.test" +
                      r"legacy MX audit, owner nostats-audit\.test\., preference 5, ", mark)
        self.one_line(PREFIX % r"nostats-refuse\.test" +
                      r"outgoing transfer refused, type AXFR", mark)
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
        k = Knotd(Config([z], policies=[{"id": "toggle", "counters": "off"}]))
        seen = []
        with k:
            for counters in ("off", "on", "off"):
                if counters != "off" or seen:
                    k.config.policies = [{"id": "toggle", "counters": counters}]
                    k.reload()
                for name in ("toggle.test", "sub.toggle.test"):
                    for tcp in (False, True):
                        assert_enforced(k.wire(name, "MX", tcp=tcp), name + ".",
                                        legacy=["mailgate", "smtp.isp.net"],
                                        what="counters: %s" % counters)
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
