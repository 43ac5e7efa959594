#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Operations: `knotc reload`, `knotc zone-reload`, an edited zone file and
an audit -> enforce switch keep the answers right, also while queries run."""

import threading
import time
import unittest

from knotharness import FILTER_SET, Config, Knotd, Zone, main, summary, zone_text

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
                             policies=[{"id": "rollout", "mode": "audit"}]))
        cls.k.start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def assert_enforced(self, what):
        for tcp in (False, True):
            r = self.k.wire("your-domain.com", "MX", tcp=tcp)
            self.assertEqual((r.rcode, r.aa), ("NOERROR", True), what + "\n" + r.text())
            self.assertEqual(r.mx(), FILTER_SET, what + "\n" + r.text())

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
        soa = self.k.kdig("your-domain.com", "SOA")
        self.assertEqual(soa.answer[0][3].split()[2], "2", "zone file reloaded")
        self.assert_enforced("after editing the zone file")
        r = self.k.kdig("your-domain.com", "MX", tcp=True)
        self.assertNotIn("brand-new", r.text())
        lines = self.k.wait_log(r"legacy MX blocked, owner your-domain\.com\., preference 1, "
                                r"exchange brand-new\.legacy\.example\., risk bypass", mark)
        self.assertEqual(len(lines), 1, "\n".join(self.k.module_lines(mark)))
        summary("zone file edit", lines)

    def test_3_audit_to_enforce(self):
        """The documented rollout: audit first, then switch the policy to
        enforce in knot.conf and `knotc reload`."""
        r = self.k.kdig("rollout.test", "MX")
        self.assertEqual(r.mx(), [(5, "old.rollout.example.")], "audit serves the data")
        self.assertTrue(self.k.wait_log(r" warning: .*legacy MX audit, owner rollout\.test\."),
                        "\n".join(self.k.module_lines()))
        # The action is part of the audit key: the `blocked` line comes at
        # once whatever log-interval (test_audit.py checks it with 3600).
        self.k.config.policies = [{"id": "rollout", "mode": "enforce", "log-interval": 0}]
        mark = self.k.mark()
        self.k.reload()
        r = self.k.kdig("rollout.test", "MX")
        self.assertEqual(r.mx(), FILTER_SET, "enforced after reload\n" + r.text())
        self.assertTrue(self.k.wait_log(r" notice: .*legacy MX blocked, owner rollout\.test\., "
                                        r"preference 5, exchange old\.rollout\.example\.", mark),
                        "\n".join(self.k.module_lines(mark)))
        s = self.k.zone_stats("rollout.test")
        self.assertGreaterEqual(s.get("enforced", 0), 1, s)
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
