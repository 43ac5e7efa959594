#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Signature reuse in a signed zone with many MX owners (issue 19).

A zone signed by knotd (default policy) holds 2,000 names with one legacy
MX each. The module logs `signed RRset, owner ..., signatures N` at debug
level for every RRset it signs anew (a cache miss), so the log says how
many signatures it made:

1. Every owner asked once with DO (UDP, EDNS 1232): the filtering set with
   one RRSIG MX shaped like the zone's SOA signature; 2,000 RRsets signed,
   one per owner.
2. Every owner asked again, with delv and with the query in mixed case:
   delv fully validates each answer, each RRSIG is byte for byte the one
   of round 1, and nothing more is signed.
3. `knotc zone-sign`: the next answers carry the new validity period, each
   owner is signed exactly once more, and delv validates a sample.

`failed` stays 0 throughout.

Past the budget (the fault-injection build, $MXFILTER_FAULTY_SO, with
MXFILTER_SIGCACHE giving a budget of a few dozen entries and no refill):
the zone recycles its own entries for `burst` more signatures, then DO
queries needing a new signature get SERVFAIL, count as `failed` and log
`(exceeded limit)`; no answer carries a legacy MX or an unsigned set, and
cached answers are still served.
"""

import concurrent.futures
import random
import re
import shutil
import subprocess
import time
import unittest

from knotharness import FILTER_SET, Config, Knotd, Zone, faulty_module, main, run, summary

DELV = shutil.which("delv")
ZONE = "many.test"
OWNERS = 2000
BUFSIZE = 1232
SIGNED_RE = re.compile(r"module 'mod-mxfilter', signed RRset, owner (\S+), type MX, "
                       r"ttl \d+, signatures (\d+)$")


def owner(i):
    return "h%04d.%s" % (i, ZONE)


BODY = "".join("h%04d MX %d mail%d.legacy.example.\n" % (i, 5 + i % 30, i)
               for i in range(OWNERS))


def rrsig_fields(rdata):
    """Fields of an RRSIG from the wire parse ("\\# LEN HEX")."""
    raw = bytes.fromhex("".join(rdata.split()[2:]))
    return {"covered": int.from_bytes(raw[0:2], "big"), "alg": raw[2],
            "labels": raw[3], "exp": int.from_bytes(raw[8:12], "big"),
            "inc": int.from_bytes(raw[12:16], "big"),
            "tag": int.from_bytes(raw[16:18], "big"), "raw": raw}


def mixed_case(name):
    return "".join(c.upper() if random.random() < 0.5 else c for c in name)


class SigCache(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.k = Knotd([Zone(ZONE, BODY, module="mod-mxfilter",
                            extra={"dnssec-signing": "on"})])
        cls.k.start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    # -- helpers
    def soa_sig(self):
        r = self.k.wire(ZONE, "SOA", do=True, bufsize=BUFSIZE, timeout=10)
        sigs = [rrsig_fields(a[3]) for a in r.answer if a[2] == "RRSIG"]
        self.assertEqual(len(sigs), 1, "one RRSIG over SOA expected:\n" + r.text())
        return sigs[0]

    def signed(self, since=0):
        """{owner: signatures} from the debug lines after SINCE (each owner
        at most once, or the test fails)."""
        seen = {}
        for line in self.k.log_lines(since):
            m = SIGNED_RE.search(line)
            if m:
                name = m.group(1).lower()
                self.assertNotIn(name, seen, "%s signed twice in one round" % name)
                seen[name] = int(m.group(2))
        return seen

    def wait_signed(self, since, count):
        """Wait (bounded) until COUNT signing lines are logged after SINCE."""
        self.k.wait_log(SIGNED_RE.pattern, since=since, timeout=30, count=count)
        self.k.settle_log()
        return self.signed(since)

    def ask(self, name, soa):
        """MX + DO over UDP: the filtering set at NAME (its spelling kept),
        one RRSIG MX made like the SOA's; returns the RRSIG's bytes."""
        r = self.k.wire(name, "MX", do=True, bufsize=BUFSIZE, timeout=10)
        self.assertEqual((r.rcode, r.aa, r.tc), ("NOERROR", True, False), r.text())
        self.assertEqual(r.mx(), FILTER_SET, r.text())
        self.assertFalse(re.search(r"legacy\.example", r.text(), re.I), r.text())
        sigs = [(a[0], rrsig_fields(a[3])) for a in r.answer if a[2] == "RRSIG"]
        self.assertEqual(len(sigs), 1, r.text())
        own, s = sigs[0]
        self.assertEqual(own, name + ".", r.text())
        self.assertEqual((s["covered"], s["labels"]), (15, 3), r.text())
        self.assertEqual((s["alg"], s["tag"], s["inc"], s["exp"]),
                         (soa["alg"], soa["tag"], soa["inc"], soa["exp"]), r.text())
        return s["raw"]

    def delv(self, name, anchor):
        try:
            rc, o, e = run([DELV, "@127.0.0.1", "-p", str(self.k.port), "-a", anchor,
                            "+root=" + ZONE, name, "MX"], timeout=60)
        except subprocess.TimeoutExpired:
            return name, False, "timed out"
        text = o + e
        mx = sorted((int(p), n.lower()) for p, n in
                    re.findall(r"^\S+\s+\d+\s+IN\s+MX\s+(\d+)\s+(\S+)", text, re.M))
        return name, "; fully validated" in text and mx == FILTER_SET, text

    def delv_all(self, names, anchor):
        """delv on every name (4 at a time); the names that did not validate."""
        bad = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            for name, ok, text in pool.map(lambda n: self.delv(n, anchor), names):
                if not ok:
                    bad.append("%s:\n%s" % (name, text))
        return bad

    # -- the test
    def test_signed_once_per_owner(self):
        if not DELV:
            self.skipTest("delv not installed")
        out = []
        soa = self.soa_sig()
        names = [owner(i) for i in range(OWNERS)]

        # 1. Each owner once: one signing line per owner.
        mark = self.k.mark()
        first = {n: self.ask(n, soa) for n in names}
        signed = self.wait_signed(mark, OWNERS)
        self.assertEqual(set(signed), {n + "." for n in names})
        self.assertEqual(set(signed.values()), {1})
        out.append("round 1: %d owners asked with DO, %d RRsets signed (one each)"
                   % (OWNERS, len(signed)))

        # 2. Again: delv validates, the same RRSIG comes back whatever the
        # spelling, and nothing is signed.
        mark = self.k.mark()
        anchor = self.k.trust_anchor(ZONE)
        bad = self.delv_all(names, anchor)
        self.assertEqual(bad, [], "%d of %d answers did not validate, first:\n%s"
                         % (len(bad), OWNERS, bad[:1]))
        changed = [n for n in names if self.ask(mixed_case(n), soa) != first[n]]
        self.assertEqual(changed, [], "RRSIGs not reused: %s" % changed[:5])
        self.k.settle_log()
        self.assertEqual(self.signed(mark), {}, "round 2 signed again")
        out.append("round 2: delv fully validated %d answers; the same RRSIG for "
                   "every owner in any spelling; 0 RRsets signed" % OWNERS)

        # 3. zone-sign: new validity; each owner signed once more.
        time.sleep(1.1)  # A new inception (whole seconds).
        self.k.knotc("zone-sign", ZONE)
        deadline = time.monotonic() + 60
        while self.soa_sig()["inc"] == soa["inc"] and time.monotonic() < deadline:
            time.sleep(0.2)
        new = self.soa_sig()
        self.assertNotEqual(new["inc"], soa["inc"], "zone-sign did not re-sign the SOA")
        mark = self.k.mark()
        for n in names:
            self.ask(n, new)
        for n in names[::100]:
            self.ask(n, new)
        signed = self.wait_signed(mark, OWNERS)
        self.assertEqual(set(signed), {n + "." for n in names})
        bad = self.delv_all(names[::100], anchor)
        self.assertEqual(bad, [], "after zone-sign:\n%s" % bad[:1])
        out.append("zone-sign: inception %d -> %d, %d RRsets signed again (one each), "
                   "delv validates %d sampled answers" % (soa["inc"], new["inc"],
                                                           len(signed), len(names[::100])))

        stats = self.k.zone_stats(ZONE)
        self.assertEqual(stats.get("failed", 0), 0, stats)
        self.assertGreaterEqual(stats.get("enforced", 0), 3 * OWNERS, stats)
        out.append("counters: " + ", ".join("%s %d" % kv for kv in sorted(stats.items())
                                            if kv[1]))
        summary("signature reuse, %d owners" % OWNERS, out)


class OverBudget(unittest.TestCase):
    OWNERS = 300
    BURST = 10

    @classmethod
    def setUpClass(cls):
        # About 25 entries of ~300 bytes next to the smallest index; no
        # refill of the rate bucket (rate 0).
        cls.k = Knotd(Config([Zone(ZONE, BODY, module="mod-mxfilter",
                                   extra={"dnssec-signing": "on"})], module=faulty_module()),
                      env={"MXFILTER_SIGCACHE": "10000,0,0,%d" % cls.BURST},
                      allow_module_errors=True)
        cls.k.start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def test_fail_closed_past_the_rate(self):
        served, failed = [], []
        for i in range(self.OWNERS):
            r = self.k.wire(owner(i), "MX", do=True, bufsize=BUFSIZE, timeout=10)
            self.assertFalse(re.search(r"legacy\.example", r.text(), re.I), r.text())
            if r.rcode == "NOERROR":
                self.assertEqual(r.mx(), FILTER_SET, r.text())
                self.assertEqual(len([a for a in r.answer if a[2] == "RRSIG"]), 1, r.text())
                served.append(i)
            else:
                self.assertEqual((r.rcode, r.mx()), ("SERVFAIL", []), r.text())
                failed.append(i)
        # What fits, plus BURST recycled entries; the rest fails closed.
        self.assertTrue(self.BURST < len(served) < 80, "served %d" % len(served))
        self.assertEqual(served, list(range(len(served))), "served %s" % served)
        stats = self.k.zone_stats(ZONE)
        self.assertEqual(stats.get("failed", 0), len(failed), stats)
        self.assertTrue(self.k.wait_log(r"failed to enforce MX, owner \S+, answered "
                                        r"SERVFAIL, suppressed \d+ \(exceeded limit\)"),
                        "no 'exceeded limit' error line")
        # The last owners signed are still cached and served, unsigned
        # answers (DO=0) are not affected.
        mark = self.k.mark()
        for i in served[-5:]:
            r = self.k.wire(owner(i), "MX", do=True, bufsize=BUFSIZE, timeout=10)
            self.assertEqual((r.rcode, r.mx()), ("NOERROR", FILTER_SET), r.text())
        for i in failed[:5]:
            r = self.k.wire(owner(i), "MX", do=False, timeout=10)
            self.assertEqual((r.rcode, r.mx()), ("NOERROR", FILTER_SET), r.text())
        self.k.settle_log()
        self.assertEqual([l for l in self.k.log_lines(mark) if SIGNED_RE.search(l)], [])
        summary("past the budget", [
            "%d owners asked with DO: %d served signed, %d SERVFAIL (failed %d, "
            "'exceeded limit'), no legacy MX" % (self.OWNERS, len(served), len(failed),
                                                stats.get("failed", 0)),
            "cached answers still served, DO=0 unaffected"])


if __name__ == "__main__":
    main()
