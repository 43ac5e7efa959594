#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The audit trail at hosting-provider scale, as a provider checks it:

- 20,000 enrolled zones with 2 legacy MX records each, each zone's MX asked
  once: exactly 40,000 `blocked` lines, none twice (one limiter for every
  zone used to lose most of them);
- 300 records in 300 zones, 21 occurrences each across two intervals: two
  lines each, and lines + suppressed = 21.

One knotd loads 20,300 small zones (a few seconds here); dnsperf sends the
queries over TCP (no retry can add an occurrence) and reports every one
answered. Every wait is bounded and polls."""

import os
import re
import shutil
import tempfile
import time
import unittest

from knotharness import Config, Knotd, main, run, summary

ZONES = 20000
REPEAT = 300
INTERVAL = 8  # log-interval of the repeat zones, seconds

# One zone file per kind, shared by all its zones (names relative to each
# zone's own origin): no 20,000 files to write.
BIG = ("$TTL 3600\n@ SOA ns1 hostmaster 1 3600 900 604800 300\n@ NS ns1\n"
       "ns1 A 127.0.0.1\n@ MX 5 mailgate\n@ MX 40 smtp.isp.net.\n")
ONE = ("$TTL 3600\n@ SOA ns1 hostmaster 1 3600 900 604800 300\n@ NS ns1\n"
       "ns1 A 127.0.0.1\n@ MX 5 old.example.\n")


class ScaleKnotd(Knotd):
    """Zones listed apart (DOMAINS: (name, template)), templates reading one
    shared file each, and zones counted as loaded from the log (one knotc
    call per zone would take minutes)."""

    START_TIMEOUT = 180.0  # knotc answers once the zones are set up.

    def __init__(self, domains, files, config):
        super().__init__(config)
        self.domains = domains
        self.files = files  # template id -> zone file text

    def render_conf(self):
        self.config.templates = []
        for tid, text in self.files.items():
            path = os.path.join(self.dir, "zones", tid + ".zone")
            with open(path, "w") as f:
                f.write(text)
            self.config.templates.append({"id": tid, "module": "mod-mxfilter/" + tid,
                                          "file": path})
        return super().render_conf() + "zone:\n" + "".join(
            "  - domain: %s\n    template: %s\n" % d for d in self.domains)

    def wait_zones_loaded(self, timeout=15.0, zones=None):
        want = len(self.domains)
        deadline = time.monotonic() + 180
        n = 0
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("knotd exited with %s" % self.exit_status)
            n = len(re.findall(r"\] loaded, serial ", self.log_text()))
            if n >= want:
                return
            time.sleep(0.5)
        raise RuntimeError("%d of %d zones loaded" % (n, want))


@unittest.skipUnless(shutil.which("dnsperf"), "dnsperf not installed")
class Scale(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        domains = [("z%05d.scale" % i, "scale") for i in range(ZONES)]
        domains += [("r%03d.repeat" % i, "repeat") for i in range(REPEAT)]
        cls.k = ScaleKnotd(domains, {"scale": BIG, "repeat": ONE}, Config(
            policies=[{"id": "scale", "counters": False},
                      {"id": "repeat", "counters": False, "log-interval": INTERVAL}],
            log_level="info", server={"udp-workers": 2, "tcp-workers": 4}))
        t0 = time.monotonic()
        cls.k.start()
        cls.load_s = time.monotonic() - t0
        cls.tmp = tempfile.mkdtemp(prefix="mxf-scale-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        cls.k.stop()

    def dnsperf(self, names):
        """Every name's MX once, in order, over TCP; all must be answered."""
        path = os.path.join(self.tmp, "q%d" % time.monotonic_ns())
        with open(path, "w") as f:
            f.write("".join("%s MX\n" % n for n in names))
        rc, out, err = run(["dnsperf", "-s", "127.0.0.1", "-p", str(self.k.port),
                            "-m", "tcp", "-d", path, "-n", "1", "-c", "4", "-q", "64",
                            "-t", "10"], timeout=300)
        self.assertEqual(rc, 0, out + err)
        done = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
        self.assertEqual(done, len(names), out)
        self.assertRegex(out, r"NOERROR %d \(" % len(names))
        return out

    def wait_lines(self, pattern, since, count, timeout):
        """Bounded wait for COUNT lines after SINCE matching PATTERN (polled
        twice a second: the log holds tens of thousands of lines)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            n = sum(1 for l in self.k.log_lines(since) if rx.search(l))
            if n >= count or time.monotonic() > deadline:
                return n
            time.sleep(0.5)

    def blocked(self, since, pattern):
        rx = re.compile(r" notice: \[(%s)\.\] module 'mod-mxfilter/\w+', legacy MX blocked, "
                        r"owner \1\., preference (\d+), exchange (\S+), risk \w+, "
                        r"client 127\.0\.0\.1, suppressed (\d+)$" % pattern)
        out = []
        for l in self.k.log_lines(since):
            m = rx.search(l)
            if m:
                out.append(m.groups())
        return out

    def test_1_every_record_of_20000_zones(self):
        mark = self.k.mark()
        t0 = time.monotonic()
        self.dnsperf(["z%05d.scale" % i for i in range(ZONES)])
        query_s = time.monotonic() - t0
        self.wait_lines(r"legacy MX blocked", mark, 2 * ZONES, 120)
        self.k.settle_log()
        lines = self.blocked(mark, r"z\d{5}\.scale")
        keys = {(z, p, e) for z, p, e, s in lines}
        self.assertEqual(len(keys), 2 * ZONES, "records without a line")
        self.assertEqual(len(lines), 2 * ZONES, "records logged twice")
        self.assertEqual({s for _, _, _, s in lines}, {"0"})
        self.assertEqual(self.k.module_lines(mark, "limiter full"), [])
        summary("20,000 zones x 2 legacy records", [
            "knotd started with %d zones in %.1f s, %d queries in %.1f s"
            % (ZONES + REPEAT, self.load_s, ZONES, query_s),
            "%d blocked lines, %d distinct records" % (len(lines), len(keys))])

    def test_2_exact_count_across_two_intervals(self):
        names = ["r%03d.repeat" % i for i in range(REPEAT)]
        mark = self.k.mark()
        # Each record's 20 occurrences come together: its first line, then
        # 19 within its interval...
        self.dnsperf([n for n in names for _ in range(20)])
        self.wait_lines(r"legacy MX blocked", mark, REPEAT, 60)
        time.sleep(INTERVAL + 1.5)  # ...then every interval is over...
        mark2 = self.k.mark()
        self.dnsperf(names)  # ...and the 21st: a line carrying the 19.
        self.wait_lines(r"legacy MX blocked", mark2, REPEAT, 60)
        self.k.settle_log()
        lines = self.blocked(mark, r"r\d{3}\.repeat")
        per = {}
        for z, p, e, s in lines:
            per.setdefault(z, []).append(int(s))
        self.assertEqual(len(per), REPEAT)
        bad = {z: s for z, s in per.items() if s != [0, 19]}
        self.assertEqual(bad, {}, "lines per record (suppressed values)")
        self.assertEqual({len(s) + sum(s) for s in per.values()}, {21})
        summary("300 records x 21 occurrences", [
            "%d records: 2 lines each, suppressed 0 then 19" % len(per)])


if __name__ == "__main__":
    main()
