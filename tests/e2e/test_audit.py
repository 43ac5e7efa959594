#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Audit trail rate limiting: one line per (owner, preference, exchange)
per log-interval per zone, whatever the query rate and the worker thread
that answered; `suppressed N` counts what was not logged."""

import re
import threading
import time
import unittest

from knotharness import Knotd, Zone, main, summary

LEGACY = """
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
"""

POLICIES = [
    {"id": "li2", "log-interval": 2},
    {"id": "li0", "log-interval": 0},
]

ZONES = [
    Zone("burst.test", LEGACY, module="mod-mxfilter"),
    Zone("li2.test", LEGACY, module="mod-mxfilter/li2"),
    Zone("li0.test", LEGACY, module="mod-mxfilter/li0"),
    Zone("twin.test", LEGACY, module="mod-mxfilter"),
]


def line_re(zone, pref, exch, risk, suppressed=r"\d+"):
    return (r" notice: \[%s\.\] module 'mod-mxfilter(/[^']+)?', legacy MX blocked, "
            r"owner %s\., preference %d, exchange %s, risk %s, client 127\.0\.0\.1, "
            r"suppressed (%s)$" % (re.escape(zone), re.escape(zone), pref,
                                   re.escape(exch), risk, suppressed))


class Audit(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # More workers than cores: the limiter must hold across threads.
        cls.k = Knotd(ZONES, mod_mxfilter=POLICIES, log_level="info",
                      server={"udp-workers": 4, "tcp-workers": 4})
        cls.k.start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def burst(self, zone, n, threads=5):
        """N MX queries from THREADS concurrent clients, UDP and TCP mixed,
        so several knotd workers answer. Returns the replies."""
        replies, errors = [], []
        lock = threading.Lock()

        def worker(i):
            for j in range(i, n, threads):
                try:
                    r = self.k.wire(zone, "MX", tcp=(j % 3 == 0))
                    with lock:
                        replies.append(r)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errors.append(repr(e))

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(len(replies), n)
        for r in replies:
            self.assertEqual(r.mx(), [(10, "france.security-mail.net."),
                                      (20, "europe.security-mail.net.")], r.text())
        return replies

    def lines(self, zone, pref, exch, risk, since=0):
        rx = re.compile(line_re(zone, pref, exch, risk))
        return [l for l in self.k.log_lines(since) if rx.search(l)]

    def test_burst_one_line_per_record(self):
        """50 queries with log-interval 60: exactly one line per record."""
        mark = self.k.mark()
        self.burst("burst.test", 50)
        self.k.wait_log(line_re("burst.test", 40, "smtp.isp.net.", "fallback"), mark)
        self.k.settle_log()
        l5 = self.lines("burst.test", 5, "mailgate.burst.test.", "bypass", mark)
        l40 = self.lines("burst.test", 40, "smtp.isp.net.", "fallback", mark)
        allmod = self.k.module_lines(mark, "legacy MX")
        self.assertEqual(len(l5), 1, "\n".join(allmod))
        self.assertEqual(len(l40), 1, "\n".join(allmod))
        self.assertEqual(len(allmod), 2, "\n".join(allmod))
        for l in l5 + l40:
            self.assertTrue(l.endswith("suppressed 0"), l)
        # A second zone with the same records is rate-limited on its own.
        self.k.wire("twin.test", "MX")
        self.assertTrue(self.k.wait_log(line_re("twin.test", 5, "mailgate.twin.test.",
                                                "bypass", "0"), mark))
        summary("burst of 50, log-interval 60", l5 + l40)

    def test_interval_suppressed_count(self):
        """log-interval 2: 50 queries, wait past it, one more query: a line
        with `suppressed 49` for each record."""
        mark = self.k.mark()
        self.burst("li2.test", 50)
        self.k.wait_log(line_re("li2.test", 40, "smtp.isp.net.", "fallback"), mark)
        self.k.settle_log()
        first5 = self.lines("li2.test", 5, "mailgate.li2.test.", "bypass", mark)
        first40 = self.lines("li2.test", 40, "smtp.isp.net.", "fallback", mark)
        self.assertEqual(len(first5), 1, "\n".join(self.k.module_lines(mark)))
        self.assertEqual(len(first40), 1, "\n".join(self.k.module_lines(mark)))
        time.sleep(3.2)
        mark2 = self.k.mark()
        self.k.wire("li2.test", "MX")
        l5 = self.k.wait_log(line_re("li2.test", 5, "mailgate.li2.test.", "bypass", "49"), mark2)
        l40 = self.k.wait_log(line_re("li2.test", 40, "smtp.isp.net.", "fallback", "49"), mark2)
        self.assertEqual(len(l5), 1, "\n".join(self.k.module_lines(mark2)))
        self.assertEqual(len(l40), 1, "\n".join(self.k.module_lines(mark2)))
        # Counters count every blocked record, logged or not.
        s = self.k.zone_stats("li2.test")
        self.assertEqual(s.get("blocked[bypass]"), 51, s)
        self.assertEqual(s.get("blocked[fallback]"), 51, s)
        self.assertEqual(s.get("enforced"), 51, s)
        summary("log-interval 2", first5 + first40 + l5 + l40)

    def test_interval_zero_logs_everything(self):
        """log-interval 0: every occurrence logged, suppressed 0."""
        mark = self.k.mark()
        self.burst("li0.test", 20, threads=4)
        l5 = self.k.wait_log(line_re("li0.test", 5, "mailgate.li0.test.", "bypass", "0"),
                             mark, count=20)
        l40 = self.k.wait_log(line_re("li0.test", 40, "smtp.isp.net.", "fallback", "0"),
                              mark, count=20)
        self.k.settle_log()
        self.assertEqual(len(self.lines("li0.test", 5, "mailgate.li0.test.", "bypass", mark)),
                         20)
        self.assertEqual(len(l40), 20)
        self.assertEqual(len(self.k.module_lines(mark, "legacy MX")), 40)


if __name__ == "__main__":
    main()
