#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Under load (dnsperf, several clients and knotd workers, UDP and TCP):
knotd stays up, counters add up to the queries answered, and the audit trail
still holds one line per legacy record per log-interval. Bounded: 2 runs of
at most 3 s at most 4000 queries/s each."""

import os
import re
import shutil
import tempfile
import unittest

from knotharness import FILTER_SET, Config, Knotd, Zone, main, run, summary

BODY = """
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
sub MX 7 mailgate
*.wild MX 8 mailgate
www A 192.0.2.80
"""

QUERIES = ["load.test MX", "sub.load.test MX", "a.wild.load.test MX",
           "www.load.test A", "load.test SOA"]


@unittest.skipUnless(shutil.which("dnsperf"), "dnsperf not installed")
class Load(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.k = Knotd(Config([Zone("load.test", BODY, module="mod-mxfilter")], log_level="info",
                             server={"udp-workers": 3, "tcp-workers": 3}))
        cls.k.start()
        cls.tmp = tempfile.mkdtemp(prefix="mxf-load-")
        cls.data = os.path.join(cls.tmp, "queries")
        with open(cls.data, "w") as f:
            f.write("\n".join(QUERIES) + "\n")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        cls.k.stop()

    def dnsperf(self, mode):
        rc, out, err = run(["dnsperf", "-s", "127.0.0.1", "-p", str(self.k.port),
                            "-m", mode, "-d", self.data, "-c", "8", "-T", "2",
                            "-l", "3", "-Q", "4000", "-t", "2", "-e"], timeout=30)
        self.assertEqual(rc, 0, out + err)
        done = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
        lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
        codes = dict((c, int(n)) for c, n in re.findall(r"(\w+) (\d+) \(", out.split(
            "Response codes:")[1].splitlines()[0])) if "Response codes:" in out else {}
        return done, lost, codes, out

    def test_load(self):
        mark = self.k.mark()
        before = self.k.zone_stats("load.test")
        total = 0
        report = []
        for mode in ("udp", "tcp"):
            done, lost, codes, out = self.dnsperf(mode)
            self.assertEqual(lost, 0, out)
            self.assertEqual(set(codes), {"NOERROR"}, out)
            total += done
            report.append("%s: %d queries completed, codes %s" % (mode, done, codes))
        self.assertTrue(self.k.alive(), "knotd died under load")
        after = self.k.zone_stats("load.test")
        d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        # dnsperf cycles through QUERIES: 3 in 5 are legacy MX answers.
        mx = sum(1 for i in range(total) if i % len(QUERIES) < 3)
        self.assertLessEqual(abs(d.get("enforced", 0) - mx), 3 * 8 * 2,
                             "enforced %s vs ~%d MX queries" % (d.get("enforced"), mx))
        # Every rewritten answer blocks exactly one bypass record (5, 7 or
        # 8); apex answers (1 in 3) also block 40 smtp.isp.net (fallback).
        self.assertEqual(d.get("blocked[bypass]"), d.get("enforced"), d)
        self.assertLessEqual(abs(3 * d.get("blocked[fallback]", 0) - d.get("enforced", 0)),
                             3 * 8 * 2 * 3, d)
        self.assertEqual(d.get("failed", 0), 0, d)
        # Still the filtering set after the load.
        self.assertEqual(self.k.kdig("load.test", "MX").mx(), FILTER_SET)
        # One line per (owner, preference, exchange) in the interval.
        self.k.settle_log()
        lines = self.k.module_lines(mark, "legacy MX blocked")
        keys = [re.search(r"owner (\S+), preference (\d+), exchange (\S+),", l).groups()
                for l in lines]
        self.assertEqual(len(keys), len(set(keys)), "\n".join(lines))
        self.assertLessEqual(len(keys), 4, "\n".join(lines))
        report.append("counters delta: %s" % sorted(d.items()))
        report.append("%d audit lines for %d queries" % (len(lines), total))
        summary("load", report)


if __name__ == "__main__":
    main()
