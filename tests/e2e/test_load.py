#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Under load (dnsperf, several clients and knotd workers, UDP and TCP):
knotd stays up, counters add up to the queries answered, and the audit trail
stays exact: every legacy record that was answered has its lines, lines about
one record are at least `log-interval` apart, and lines plus their
`suppressed` add up to the record's occurrences. Bounded: 2 runs of at most
3 s at most 4000 queries/s each, then a bounded wait for the last lines."""

import calendar
import os
import re
import shutil
import tempfile
import time
import unittest

from knotharness import (Config, Knotd, Zone, assert_enforced, main, poll, run,
                         summary)

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

# The legacy records (owner, preference, exchange) the queries meet.
RECORDS = {("load.test.", 5, "mailgate.load.test."), ("load.test.", 40, "smtp.isp.net."),
           ("sub.load.test.", 7, "mailgate.load.test."),
           ("*.wild.load.test.", 8, "mailgate.load.test.")}

# Short enough that the load spans several intervals of every record.
INTERVAL = 3

LINE_RE = re.compile(r"^(\S+)T(\d\d):(\d\d):(\d\d)\S* notice: \[load\.test\.\] module "
                     r"'mod-mxfilter/load', legacy MX blocked, owner (\S+), preference (\d+), "
                     r"exchange (\S+), risk (?:bypass|fallback), client (?:127\.0\.0\.1|-), "
                     r"suppressed (\d+)$")


@unittest.skipUnless(shutil.which("dnsperf"), "dnsperf not installed")
class Load(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.k = Knotd(Config([Zone("load.test", BODY, module="mod-mxfilter/load")],
                             policies=[{"id": "load", "log-interval": INTERVAL}],
                             log_level="info", server={"udp-workers": 3, "tcp-workers": 3}))
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

    def lines(self, since):
        """{record: [(time, suppressed)]} of the `blocked` lines after SINCE."""
        per = {}
        for l in self.k.module_lines(since, "legacy MX"):
            m = LINE_RE.match(l)
            self.assertTrue(m, "not a blocked line of load.test: " + l)
            t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%d")) + \
                3600 * int(m.group(2)) + 60 * int(m.group(3)) + int(m.group(4))
            rec = (m.group(5), int(m.group(6)), m.group(7))
            per.setdefault(rec, []).append((t, int(m.group(8))))
        return per

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
        assert_enforced(self.k.kdig("load.test", "MX", tcp=True), "load.test.",
                        legacy=["mailgate"])
        # Occurrences: the blocks counted, and that answer's.
        apex_occ = d["blocked[fallback]"] + 1
        bypass_occ = d["blocked[bypass]"] + 1

        # The last occurrences of each record are held until its interval
        # is over; the zone's next MX answer (a name without MX: no
        # occurrence of its own) writes them. Bounded wait for every
        # occurrence to be in a line.
        def accounted():
            self.k.wire("www.load.test", "MX", tcp=True)
            self.k.settle_log(quiet=0.2, timeout=1.0)
            per = self.lines(mark)
            occ = {rec: sum(1 + s for _, s in l) for rec, l in per.items()}
            apex = occ.get(("load.test.", 40, "smtp.isp.net."), 0)
            bypass = sum(n for (o, p, e), n in occ.items() if p != 40)
            return (apex, bypass) == (apex_occ, bypass_occ)
        got = poll(accounted, timeout=6 * INTERVAL + 10)
        per = self.lines(mark)
        occ = {rec: sum(1 + s for _, s in l) for rec, l in per.items()}
        # Every record answered has its lines, no other record any.
        self.assertEqual(set(per), RECORDS, "\n".join(self.k.module_lines(mark)))
        # Lines + suppressed = occurrences, per record: the apex's two
        # records come in every apex answer (one per fallback block), the
        # three bypass records add up to the bypass blocks.
        self.assertTrue(got, "occurrences %s, counters %s" % (occ, d))
        self.assertEqual(occ[("load.test.", 5, "mailgate.load.test.")], apex_occ, occ)
        self.assertEqual(occ[("load.test.", 40, "smtp.isp.net.")], apex_occ, occ)
        self.assertEqual(sum(n for (o, p, e), n in occ.items() if p != 40), bypass_occ, occ)
        # Lines about one record are at least log-interval apart: the
        # module counts whole seconds, so more than INTERVAL - 1 seconds,
        # and the log's whole-second time stamps differ by INTERVAL - 1 at
        # least.
        for rec, l in per.items():
            times = [t for t, _ in l]
            gaps = [b - a for a, b in zip(times, times[1:])]
            self.assertTrue(all(g >= INTERVAL - 1 for g in gaps), "%s: %s" % (rec, l))
        n = sum(len(l) for l in per.values())
        report.append("counters delta: %s" % sorted(d.items()))
        report.append("%d audit lines for %d occurrences of %d records (%d queries)" %
                      (n, sum(occ.values()), len(per), total))
        summary("load", report)


if __name__ == "__main__":
    main()
