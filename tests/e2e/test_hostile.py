#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hostile zone data and hostile queries against an enrolled zone.

The zone holds 1,000 MX records at the apex and 300 at a subdomain,
maximal-length owner and exchange names, a 100-label owner, an MX pointing
at its own owner, an MX whose exchange is a CNAME, CNAME loops and a
wildcard. Queries use classes CH/ANY/NONE, EDNS payloads 0/512/65535,
unknown EDNS options, DO+CD, zero and two questions, and a few thousand
random and truncated packets (raw wire, UDP and TCP).

After every group knotd must still be up (`knotc status` and a normal
query), and every answer seen must hold, for each owner of the enrolled
zone, the filtering set, nothing (e.g. an empty truncated answer) or an
error rcode: never a legacy MX. Bounded: about 20 s.
"""

import os
import random
import socket
import struct
import time
import unittest

from knotharness import (FILTER_SET, Config, Knotd, Zone, main, make_query, mx_groups, opt_rr,
                         parse_strict, summary, tcp_exchange)

ZONE = "hostile.test"
ORIGIN = ZONE + "."
FILTER = sorted((p, n.lower()) for p, n in FILTER_SET)

# Names at the limits (wire sizes in comments).
MAXOWNER = "%s.%s.%s.%s.%s" % ("a" * 63, "b" * 63, "c" * 63, "d" * 48, ORIGIN)   # 255 bytes
MAXEXCH = "%s.%s.%s.%s." % ("x" * 63, "y" * 63, "z" * 63, "w" * 61)               # 255 bytes
LABELS100 = ".".join(["l"] * 100) + "." + ORIGIN                                  # 100 labels + zone


def wire_len(name):
    return sum(len(l) + 1 for l in name.rstrip(".").split(".")) + 1


assert wire_len(MAXOWNER) == 255 and wire_len(MAXEXCH) == 255


def zone_body():
    lines = []
    for i in range(1000):
        lines.append("@ MX %d mx%d.legacy.example." % (i, i))
    lines.append("@ MX 10 france.security-mail.net.")
    for i in range(300):
        lines.append("big MX %d big%d.legacy.example." % (i + 1, i))
    lines += [
        "%s MX 5 %s" % (MAXOWNER, MAXEXCH),
        "%s A 192.0.2.1" % MAXOWNER,
        "%s MX 5 mail" % LABELS100,
        "%s MX 6 %s" % (LABELS100, MAXEXCH),
        "self MX 5 self",
        "self A 192.0.2.5",
        "mxalias MX 5 alias",
        "alias CNAME mail",
        "mail A 192.0.2.25",
        "loop1 CNAME loop2",
        "loop2 CNAME loop1",
        "selfloop CNAME selfloop",
        "toapex CNAME @",
        "tobig CNAME big",
        "chain1 CNAME chain2",
        "chain2 CNAME chain3",
        "chain3 CNAME big",
        "*.wild MX 7 mail",
        "*.wild MX 8 %s" % MAXEXCH,
        "compliant MX 10 france.security-mail.net.",
        "compliant MX 20 europe.security-mail.net.",
    ]
    return "\n".join(lines)


# Raw wire (knotharness.clients): queries built by hand, a strict reply
# parser; only the owners of the enrolled zone count.

def query(name, qtype=15, qclass=1, flags=0, questions=None, edns=None):
    return make_query(name, qtype, qclass, qid=random.getrandbits(16), flags=flags,
                      questions=questions, edns=edns)


def zone_mx(reply):
    return mx_groups(reply, ORIGIN)


class Hostile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        random.seed(int(os.environ.get("MXF_HOSTILE_SEED", "6")))
        # No transfer ACL: AXFR/IXFR are refused (transfers serve the zone
        # as it is by design, `transfer: log`; test_transfer.py covers them).
        cls.k = Knotd(Config([Zone(ZONE, zone_body(), module="mod-mxfilter", acl=False)],
                             log_level="info"))
        cls.k.start()
        cls.stats = {"replies": 0, "mx answers": 0, "filtering sets": 0,
                     "truncated empty": 0, "errors": 0, "no reply": 0, "sent": 0}
        cls.report = []

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()
        summary("hostile", cls.report + ["%s: %d" % kv for kv in sorted(cls.stats.items())])

    # -- transport
    def udp(self, msg, timeout=2.0, expect=True):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(msg, ("127.0.0.1", self.k.port))
            self.stats["sent"] += 1
            try:
                data, _ = s.recvfrom(65535)
            except socket.timeout:
                self.stats["no reply"] += 1
                if expect:
                    raise AssertionError("no UDP reply to %r" % msg[:40])
                return None
            return data

    def tcp(self, msg, timeout=3.0, expect=True):
        self.stats["sent"] += 1
        try:
            return tcp_exchange(self.k.port, msg, timeout=timeout)
        except OSError:  # No reply; a cut one (ValueError) fails the test.
            self.stats["no reply"] += 1
            if expect:
                raise AssertionError("no TCP reply to %r" % msg[:40])
            return None

    # -- the rule
    def check(self, data, what):
        """Every answer: per in-zone owner the filtering set, nothing, or an
        error rcode; never a legacy MX. Returns the parsed reply."""
        if data is None:
            return None
        try:
            r = parse_strict(data)
        except (ValueError, IndexError, struct.error) as e:
            raise AssertionError("%s: unparsable reply (%s): %s" % (what, e, data[:64].hex()))
        self.stats["replies"] += 1
        groups = zone_mx(r)
        for (sec, owner), recs in groups.items():
            self.assertEqual(sorted(recs), FILTER,
                             "%s: legacy MX in %s at %s: %s" % (what, sec, owner,
                                                                sorted(recs)[:5]))
            self.stats["filtering sets"] += 1
        if groups:
            self.stats["mx answers"] += 1
        if r["rcode"] != 0:
            self.stats["errors"] += 1
        elif r["tc"] and not groups:
            self.stats["truncated empty"] += 1
        return r

    def healthy(self, what):
        self.assertTrue(self.k.alive(), "knotd died after %s" % what)
        self.k.knotc("status")
        r = self.check(self.udp(query(ORIGIN, edns=opt_rr())), "health after " + what)
        self.assertEqual(r["rcode"], 0)
        self.assertEqual(sorted(d for _, _, t, _, d in r["records"] if t == 15), FILTER,
                         "apex MX after %s" % what)
        self.report.append("%s: knotd up" % what)

    # -- groups
    def test_01_big_sets(self):
        n = 0
        # Each name and the owner of the MX its answer holds.
        for name, owner in ((ORIGIN, ORIGIN), ("big." + ORIGIN, "big." + ORIGIN),
                            ("toapex." + ORIGIN, ORIGIN), ("tobig." + ORIGIN, "big." + ORIGIN),
                            ("chain1." + ORIGIN, "big." + ORIGIN),
                            ("BiG.HoStIlE.TeSt.", "big." + ORIGIN)):
            for qtype in (15, 255):
                for edns in (None, opt_rr(0), opt_rr(512), opt_rr(1232), opt_rr(4096),
                             opt_rr(65535), opt_rr(1232, do=True)):
                    r = self.check(self.udp(query(name, qtype, edns=edns)),
                                   "%s/%d udp" % (name, qtype))
                    n += 1
                    if qtype == 15 and name.lower() in (ORIGIN, "big." + ORIGIN) and not r["tc"]:
                        self.assertEqual(r["rcode"], 0, name)
                r = self.check(self.tcp(query(name, qtype, edns=opt_rr(65535))),
                               "%s/%d tcp" % (name, qtype))
                n += 1
                if qtype == 15:
                    # Over TCP everything fits: the answer is the set.
                    self.assertEqual(r["rcode"], 0, name)
                    self.assertEqual(list(zone_mx(r)), [("an", owner)], name + " over TCP")
        self.report.append("big sets (1,000 apex, 300 sub, via CNAME): %d queries" % n)
        self.healthy("big sets")

    def test_02_names(self):
        names = [MAXOWNER, LABELS100, "self." + ORIGIN, "mxalias." + ORIGIN,
                 "alias." + ORIGIN, "loop1." + ORIGIN, "loop2." + ORIGIN,
                 "selfloop." + ORIGIN, "x.wild." + ORIGIN, "*.wild." + ORIGIN,
                 "compliant." + ORIGIN, "nonexistent." + ORIGIN,
                 MAXOWNER.upper(), "a.b.c.d.e.f.g.wild." + ORIGIN]
        n = 0
        for name in names:
            for qtype in (15, 255, 5, 1):
                for edns in (None, opt_rr(512), opt_rr(65535, do=True)):
                    self.check(self.udp(query(name, qtype, edns=edns)), "%s/%d" % (name, qtype))
                    n += 1
                self.check(self.tcp(query(name, qtype)), "%s/%d tcp" % (name, qtype))
                n += 1
        # Every MX owner with an MX answer gets the set.
        for name in (MAXOWNER, LABELS100, "self." + ORIGIN, "mxalias." + ORIGIN,
                     "x.wild." + ORIGIN):
            r = self.check(self.tcp(query(name, 15)), name)
            self.assertEqual(r["rcode"], 0, name)
            self.assertEqual(list(zone_mx(r)), [("an", name.lower())], name)
        self.report.append("long/100-label/self/CNAME-exchange/loop/wildcard names: %d queries" % n)
        self.healthy("names")

    def test_03_classes_and_edns(self):
        n = 0
        cases = []
        for qclass in (3, 255, 254, 4, 0, 1):   # CH, ANY, NONE, HS, 0, IN
            cases.append(("class %d" % qclass, query(ORIGIN, 15, qclass, edns=opt_rr())))
            cases.append(("class %d big" % qclass, query("big." + ORIGIN, 15, qclass)))
        unknown = [(65001, b"hostile"), (65535, b""), (12, b"\0" * 40), (10, b"\x01" * 8),
                   (8, b"\x00\x01\x18\x00\xc0\x00\x02"), (3, b""), (65002, os.urandom(300))]
        for payload in (0, 1, 511, 512, 65535):
            for do in (False, True):
                for flags in (0, 0x0010, 0x0100, 0x0110):   # CD, RD
                    cases.append(("edns %d do %d flags %x" % (payload, do, flags),
                                  query("big." + ORIGIN, 15, flags=flags,
                                        edns=opt_rr(payload, do=do, options=unknown[:payload % 7 + 1]))))
        cases.append(("edns version 1", query(ORIGIN, 15, edns=opt_rr(version=1))))
        cases.append(("two OPT", query(ORIGIN, 15, edns=opt_rr() + opt_rr())))
        cases.append(("all unknown options", query(ORIGIN, 15, edns=opt_rr(options=unknown))))
        cases.append(("DO+CD apex", query(ORIGIN, 15, flags=0x0010, edns=opt_rr(do=True))))
        cases.append(("zero questions", query(None, questions=[], edns=opt_rr())))
        cases.append(("two questions", query(None, questions=[
            (ORIGIN, 15, 1), ("big." + ORIGIN, 15, 1)])))
        cases.append(("two questions MX/ANY", query(None, questions=[
            ("big." + ORIGIN, 15, 1), (ORIGIN, 255, 1)], edns=opt_rr())))
        cases.append(("opcode NOTIFY", query(ORIGIN, 6, flags=0x2000)))
        cases.append(("opcode UPDATE", query(ORIGIN, 6, flags=0x2800)))
        cases.append(("opcode 15", query(ORIGIN, 15, flags=0x7800)))
        cases.append(("QR set", query(ORIGIN, 15, flags=0x8000)))
        cases.append(("AXFR over UDP", query(ORIGIN, 252)))
        cases.append(("IXFR over UDP", query(ORIGIN, 251)))
        for what, msg in cases:
            # Knot may stay silent on some (e.g. QR set); that is fine.
            self.check(self.udp(msg, timeout=1.0, expect=False), what)
            self.check(self.tcp(msg, timeout=2.0, expect=False), what + " tcp")
            n += 2
        self.report.append("classes CH/ANY/NONE/HS, EDNS 0-65535, options, DO+CD, "
                           "0/2 questions, opcodes: %d queries" % n)
        self.healthy("classes and EDNS")

    def _variants(self):
        bases = [query(ORIGIN, 15, edns=opt_rr()), query("big." + ORIGIN, 15),
                 query(MAXOWNER, 15, edns=opt_rr(65535)), query(LABELS100, 255),
                 query("x.wild." + ORIGIN, 15, edns=opt_rr(512, do=True)),
                 query("loop1." + ORIGIN, 15), query("tobig." + ORIGIN, 15, edns=opt_rr(4096))]
        return bases

    def test_04_random_and_truncated(self):
        bases = self._variants()
        msgs = []
        for _ in range(1200):             # truncated valid queries
            b = random.choice(bases)
            msgs.append(b[:random.randrange(0, len(b))])
        for _ in range(1200):             # valid queries with bytes changed
            b = bytearray(random.choice(bases))
            for _ in range(random.randint(1, 6)):
                b[random.randrange(len(b))] = random.getrandbits(8)
            msgs.append(bytes(b))
        for _ in range(800):              # garbage, sometimes with a sane header
            ln = random.randrange(0, 600)
            b = bytearray(os.urandom(ln))
            if ln >= 12 and random.random() < 0.5:
                b[2:6] = b"\x00\x00\x00\x01"
            msgs.append(bytes(b))
        deadline = time.monotonic() + 25
        sent = replies = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            for i in range(0, len(msgs), 50):
                self.assertLess(time.monotonic(), deadline, "random packets took too long")
                for m in msgs[i:i + 50]:
                    try:
                        s.sendto(m, ("127.0.0.1", self.k.port))
                        sent += 1
                    except OSError:
                        pass
                end = time.monotonic() + 0.05
                while time.monotonic() < end:
                    try:
                        data, _ = s.recvfrom(65535)
                    except BlockingIOError:
                        time.sleep(0.005)
                        continue
                    replies += 1
                    self.check(data, "reply to a random packet")
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                try:
                    data, _ = s.recvfrom(65535)
                except BlockingIOError:
                    time.sleep(0.01)
                    continue
                replies += 1
                self.check(data, "reply to a random packet")
        self.stats["sent"] += sent
        self.assertTrue(self.k.alive(), "knotd died on random UDP packets")
        # TCP: a few dozen hostile streams (cut length prefixes, garbage).
        tcp = 0
        for i in range(40):
            m = msgs[random.randrange(len(msgs))]
            try:
                with socket.create_connection(("127.0.0.1", self.k.port), timeout=1) as c:
                    if i % 4 == 0:
                        c.sendall(struct.pack("!H", len(m) + 7) + m)        # short
                    elif i % 4 == 1:
                        c.sendall(m)                                        # no prefix
                    else:
                        c.sendall(struct.pack("!H", len(m)) + m)
                    c.settimeout(0.3)
                    try:
                        buf = c.recv(65537)
                        if len(buf) >= 2:
                            ln = struct.unpack("!H", buf[:2])[0]
                            if len(buf) >= 2 + ln:
                                self.check(buf[2:2 + ln], "TCP reply to a random packet")
                    except (socket.timeout, ConnectionResetError):
                        pass
                tcp += 1
            except OSError:
                pass
        self.report.append("random/truncated packets: %d UDP sent, %d replies checked, "
                           "%d TCP streams" % (sent, replies, tcp))
        self.healthy("random and truncated packets")

    def test_05_log_and_counters(self):
        st = self.k.zone_stats(ZONE)
        self.assertEqual(st.get("failed", 0), 0, st)
        # One more apex answer: its 1,000 legacy records counted one by one
        # (preferences 0-10 bypass the filter's 10, 11-999 fall back).
        d = self.k.stats_delta(ZONE, lambda: self.check(self.tcp(query(ORIGIN)), "apex"))
        self.assertEqual((d["enforced"], d["blocked[bypass]"], d["blocked[fallback]"]),
                         (1, 11, 989), d)
        self.report.append("counters: %s" % ", ".join("%s %d" % kv for kv in sorted(st.items())))
        errs = self.k.module_lines(pattern=r" (error|critical): ")
        self.assertEqual(errs, [], "module errors logged")


if __name__ == "__main__":
    main()
