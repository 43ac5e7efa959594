#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Operations: `knotc reload`, `knotc zone-reload`, an edited zone file and
an audit -> enforce switch keep the answers right, also while queries run."""

import threading
import time
import unittest

from knotharness import (FILTER_SET, Config, Knotd, Zone, assert_enforced, main, summary,
                         zone_text)

BODY = """
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
"""

ROLLOUT_BODY = "@ MX 5 old.rollout.example."


class Reload(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.k = Knotd(Config([Zone("your-domain.com", BODY, module="mod-mxfilter"),
                              Zone("rollout.test", ROLLOUT_BODY, module="mod-mxfilter/rollout")],
                             policies=[{"id": "rollout", "mode": "audit",
                                        "log-interval": 3600}])).start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def assert_enforced(self, what):
        for tcp in (False, True):
            assert_enforced(self.k.wire("your-domain.com", "MX", tcp=tcp), "your-domain.com.",
                            legacy=("mailgate", "smtp.isp.net"), what=what)

    def hammer(self, seconds):
        """Query MX in a loop for SECONDS; return (count, bad replies)."""
        stop = time.monotonic() + seconds
        state = {"n": 0, "bad": []}

        def loop():
            for _ in range(100000):
                if time.monotonic() > stop:
                    break
                try:
                    r = self.k.wire("your-domain.com", "MX", timeout=1)
                except (OSError, ValueError) as e:
                    state["bad"].append(repr(e))
                    continue
                state["n"] += 1
                if r.rcode == "NOERROR" and r.mx() != FILTER_SET:
                    state["bad"].append(r.text())

        t = threading.Thread(target=loop)
        t.start()
        return t, state

    def test_1_reload(self):
        self.assert_enforced("before reload")
        t, st = self.hammer(2.0)
        self.k.reload()
        self.assert_enforced("after knotc reload")
        self.k.zone_reload("your-domain.com")
        t.join(10)
        self.assert_enforced("after knotc zone-reload")
        self.assertEqual(st["bad"], [], "answers during reloads")
        self.assertTrue(self.k.alive())
        summary("reload", ["%d queries during reload/zone-reload, none leaked" % st["n"]])

    def test_2_zone_file_edit(self):
        """A new legacy record added to the file, then zone-reload: still the
        filtering set, and the new record is logged as blocked."""
        mark = self.k.mark()
        self.k.write_zone("your-domain.com", zone_text(
            "your-domain.com", BODY + "@ MX 1 brand-new.legacy.example.\n", serial=2))
        self.k.zone_reload("your-domain.com")
        self.assertEqual(self.k.zone_serial("your-domain.com"), 2, "zone file reloaded")
        soa = self.k.kdig("your-domain.com", "SOA")
        self.assertEqual(soa.answer[0][3].split()[2], "2", "zone file served")
        self.assert_enforced("after editing the zone file")
        r = self.k.kdig("your-domain.com", "MX", tcp=True)
        self.assertNotIn("brand-new", r.text())
        lines = self.k.wait_log(r"legacy MX blocked, owner your-domain\.com\., preference 1, "
                                r"exchange brand-new\.legacy\.example\., risk bypass", mark)
        self.assertEqual(len(lines), 1, "\n".join(self.k.module_lines(mark)))
        summary("zone file edit", lines)

    def test_3_audit_to_enforce(self):
        """The documented rollout: audit first, then switch the policy to
        enforce in knot.conf and `knotc reload`. The action is part of the
        audit key: with `log-interval: 3600` both times, the `blocked` line
        comes at once after the switch, one line for three answers
        (test_audit.py checks it for 20 zones)."""
        audit = r" warning: .*legacy MX audit, owner rollout\.test\."
        for tcp in (False, True, False):
            r = self.k.wire("rollout.test", "MX", tcp=tcp)
            self.assertEqual(r.mx(), [(5, "old.rollout.example.")], "audit serves the data")
        self.k.wait_log(audit)
        self.k.settle_log()
        self.assertEqual(len(self.k.module_lines(0, audit)), 1,
                         "\n".join(self.k.module_lines()))
        self.k.config.policies = [{"id": "rollout", "mode": "enforce", "log-interval": 3600}]
        mark = self.k.mark()
        self.k.reload()
        d = self.k.stats_delta("rollout.test", lambda: [assert_enforced(
            self.k.wire("rollout.test", "MX", tcp=True), "rollout.test.",
            legacy=["old.rollout"], what="enforced after reload") for _ in range(3)])
        self.assertEqual((d["enforced"], d["blocked[bypass]"], d["audited"]), (3, 3, 0), d)
        blocked = r" notice: .*legacy MX blocked, owner rollout\.test\., " \
            r"preference 5, exchange old\.rollout\.example\., risk bypass, .*suppressed 0$"
        self.k.wait_log(blocked, mark)
        self.k.settle_log()
        lines = self.k.module_lines(mark, "legacy MX")
        self.assertEqual(len(lines), 1, "\n".join(lines))
        self.assertRegex(lines[0], blocked)
        self.assert_enforced("other zone after the config reload")

    def test_4_unenrol(self):
        """Removing the module from a zone and reloading serves the data."""
        self.k.config.zones[1].module = None
        self.k.reload()
        r = self.k.kdig("rollout.test", "MX")
        self.assertEqual(r.mx(), [(5, "old.rollout.example.")], r.text())
        self.assert_enforced("enrolled zone unaffected")


if __name__ == "__main__":
    main()
