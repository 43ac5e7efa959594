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

from knotharness import FILTER_SET, Knotd, Zone, main, summary

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


# ----------------------------------------------------------------------------
# Raw wire: queries built by hand, a strict reply parser.

def qname_wire(name):
    out = b""
    for lab in name.rstrip(".").split("."):
        if lab:
            b = lab.encode("latin-1")
            out += bytes([len(b)]) + b
    return out + b"\0"


def opt_rr(payload=1232, do=False, version=0, options=()):
    rdata = b"".join(struct.pack("!HH", c, len(d)) + d for c, d in options)
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\0" + struct.pack("!HHIH", 41, payload, ttl, len(rdata)) + rdata


def query(name, qtype=15, qclass=1, qid=None, flags=0, questions=None, edns=None):
    """edns: None (no OPT) or bytes of an OPT RR (or several)."""
    if qid is None:
        qid = random.getrandbits(16)
    qs = questions if questions is not None else [(name, qtype, qclass)]
    body = b"".join(qname_wire(n) + struct.pack("!HH", t, c) for n, t, c in qs)
    ar = 0 if edns is None else edns.count(b"\0\x00\x29") or 1
    hdr = struct.pack("!6H", qid, flags, len(qs), 0, 0, ar)
    return hdr + body + (edns or b"")


def read_name(msg, off):
    labels, end, jumps = [], None, 0
    while True:
        if off >= len(msg):
            raise ValueError("name past the end")
        ln = msg[off]
        if ln & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise ValueError("cut pointer")
            if end is None:
                end = off + 2
            off = ((ln & 0x3F) << 8) | msg[off + 1]
            jumps += 1
            if jumps > 127:
                raise ValueError("pointer loop")
            continue
        if ln & 0xC0:
            raise ValueError("bad label type")
        off += 1
        if ln == 0:
            break
        labels.append(msg[off:off + ln].decode("latin-1").lower())
        off += ln
    name = ".".join(labels) + "."
    if wire_len(name) > 255 and name != ".":
        raise ValueError("name too long")
    return name, (end if end is not None else off)


def parse(msg):
    """Strict parse of a reply: dict with rcode, tc, records [(sec, owner,
    type, class, data)] where data is (pref, exchange) for MX."""
    if len(msg) < 12:
        raise ValueError("short reply")
    qid, flags, qd, an, ns, ar = struct.unpack("!6H", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = read_name(msg, off)
        off += 4
    recs = []
    rcode = flags & 0xF
    for sec, cnt in (("an", an), ("ns", ns), ("ar", ar)):
        for _ in range(cnt):
            owner, off = read_name(msg, off)
            if off + 10 > len(msg):
                raise ValueError("cut RR header")
            rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10
            if off + rdlen > len(msg):
                raise ValueError("cut rdata")
            data = None
            if rtype == 15:
                pref = struct.unpack("!H", msg[off:off + 2])[0]
                exch, _ = read_name(msg, off + 2)
                data = (pref, exch)
            elif rtype == 41:
                rcode |= (ttl >> 24) << 4
            recs.append((sec, owner, rtype, rclass, data))
            off += rdlen
    if off != len(msg):
        raise ValueError("trailing bytes")
    return {"id": qid, "rcode": rcode, "tc": bool(flags & 0x0200), "qd": qd,
            "records": recs}


def in_zone(owner):
    return owner == ORIGIN or owner.endswith("." + ORIGIN)


def mx_groups(reply):
    groups = {}
    for sec, owner, rtype, _, data in reply["records"]:
        if rtype == 15 and in_zone(owner):
            groups.setdefault((sec, owner), []).append(data)
    return groups


def mx_groups_any(reply):
    """MX records of every owner, by (section, owner)."""
    groups = {}
    for sec, owner, rtype, _, data in reply["records"]:
        if rtype == 15:
            groups.setdefault((sec, owner), []).append(data)
    return groups


def udp_query(port, name, msg=None, timeout=2.0):
    """One UDP exchange (MX query for NAME unless MSG); returns the reply."""
    msg = msg or query(name, 15, edns=opt_rr())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        for _ in range(3):
            s.sendto(msg, ("127.0.0.1", port))
            try:
                while True:
                    data, _ = s.recvfrom(65535)
                    if data[:2] == msg[:2]:
                        return data
            except socket.timeout:
                continue
    raise TimeoutError("no UDP reply")


def tcp_query(port, msg, timeout=3.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(struct.pack("!H", len(msg)) + msg)
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
            chunk = s.recv(65537)
            if not chunk:
                raise ValueError("TCP connection closed early")
            buf += chunk
        return buf[2:2 + struct.unpack("!H", buf[:2])[0]]


class Hostile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        random.seed(int(os.environ.get("MXF_HOSTILE_SEED", "6")))
        # No transfer ACL: AXFR/IXFR are refused (transfers serve the zone
        # as it is by design, `transfer: log`; test_transfer.py covers them).
        cls.k = Knotd([Zone(ZONE, zone_body(), module="mod-mxfilter", acl=False)],
                      log_level="info")
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
        with socket.create_connection(("127.0.0.1", self.k.port), timeout=timeout) as s:
            s.sendall(struct.pack("!H", len(msg)) + msg)
            self.stats["sent"] += 1
            buf = b""
            deadline = time.monotonic() + timeout
            try:
                while time.monotonic() < deadline:
                    chunk = s.recv(65537)
                    if not chunk:
                        break
                    buf += chunk
                    if len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                        break
            except (socket.timeout, ConnectionResetError):
                pass
            if len(buf) < 2:
                self.stats["no reply"] += 1
                if expect:
                    raise AssertionError("no TCP reply to %r" % msg[:40])
                return None
            ln = struct.unpack("!H", buf[:2])[0]
            self.assertGreaterEqual(len(buf), 2 + ln, "cut TCP reply")
            return buf[2:2 + ln]

    # -- the rule
    def check(self, data, what):
        """Every answer: per in-zone owner the filtering set, nothing, or an
        error rcode; never a legacy MX. Returns the parsed reply."""
        if data is None:
            return None
        try:
            r = parse(data)
        except (ValueError, IndexError, struct.error) as e:
            raise AssertionError("%s: unparsable reply (%s): %s" % (what, e, data[:64].hex()))
        self.stats["replies"] += 1
        groups = mx_groups(r)
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
        for name in (ORIGIN, "big." + ORIGIN, "toapex." + ORIGIN, "tobig." + ORIGIN,
                     "chain1." + ORIGIN, "BiG.HoStIlE.TeSt."):
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
                    self.assertTrue(mx_groups(r), "%s: no MX over TCP" % name)
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
            self.assertTrue(mx_groups(r), "%s: no MX" % name)
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
        self.assertGreater(st.get("enforced", 0), 0, st)
        self.report.append("counters: %s" % ", ".join("%s %d" % kv for kv in sorted(st.items())))
        errs = self.k.module_lines(pattern=r" (error|critical): ")
        self.assertEqual(errs, [], "module errors logged")


if __name__ == "__main__":
    main()
