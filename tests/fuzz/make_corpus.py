#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/).

The rewrite seeds follow the input layout decoded by fuzz_rewrite.c; keep
them in step when the decoder changes. Run from anywhere:
    python3 tests/fuzz/make_corpus.py
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# Indices into name_table[] of fuzz_rewrite.c.
EXAMPLE, EXAMPLE_UP, MAIL, SUB, X_SUB, WILD, WILD_SUB, FRANCE, EUROPE, \
    FRANCE_UP, SMTP_ISP, ROOT, COM, EX_EX, MX_ORG, MAIL_UP, A_EX, WWW, \
    MAILGATE_SUB, EXAMPLE_ORG, LONG, MANY = range(22)

MX, CNAME, RRSIG, A, AAAA, NS, TXT, SOA, PRIV = 0, 6, 7, 9, 10, 11, 12, 13, 14
OWN_QNAME, OWN_NAME, OWN_PREV, OWN_GLUE, OWN_COPY, OWN_ZONE = 0, 2, 4, 5, 6, 7
ADVANCE = 0xC0


def policy(mode_audit=False, apex=False, nullmx_replace=False, ttl=None,
           exchanges=None, zone=0, big=False):
    """f, ttl, g [, exchange indices]; exchanges None = default set."""
    f = (1 if mode_audit else 0) | (2 if apex else 0) | (4 if nullmx_replace else 0)
    f |= 8 if ttl is not None else 0
    f |= (zone & 3) << 6
    out = bytes([f, ttl or 0])
    if big:
        return out + b"\xff"
    if exchanges is None:
        return out + b"\x00"
    f |= ((len(exchanges) - 1) & 3) << 4
    return bytes([f, ttl or 0, 0x80]) + bytes(exchanges)


def mx_rdata(items):
    """items: ('pol', k) | ('null',) | (pref, name_index)"""
    out = b""
    for it in items:
        if it[0] == "pol":
            out += bytes([it[1]])
        elif it[0] == "null":
            out += b"\x90"
        else:
            out += bytes([0xA0, it[0] % 41, it[1]])
    return out


def rrset(tb, om, rdata, count, advance=False, ttl=5, name=None, glue=None,
          notrunc=False, copy=False):
    fl = (0x20 if notrunc else 0) | (0x10 if copy else 0)
    if count > 4:
        fl |= 0x80
    else:
        fl |= (count - 1)
    # Decoding order: section, type, owner mode, flags, ttl, [count],
    # owner bytes, rdata.
    out = bytes([ADVANCE if advance else 0, tb, om, fl, ttl])
    if count > 4:
        out += bytes([count - 1])
    if om in (OWN_NAME, 3, OWN_COPY):
        out += bytes([name if name is not None else MAIL])
    if om == OWN_GLUE:
        out += bytes(glue or [0, 0])
    return out + rdata


def built(pol, qname=None, qtype=0, size=1, opts=0x01, fail=None, pre=0, sets=()):
    out = b"\x00" + pol
    out += bytes([0x00]) if qname is None else bytes([0x40, qname])
    out += bytes([qtype, size, opts])
    if opts & 0x40:
        out += bytes([fail or 0])
    out += bytes([pre, len(sets)])
    for s in sets:
        out += s
    return out


def name(text):
    out = b""
    for lab in text.rstrip(".").split("."):
        if lab:
            out += bytes([len(lab)]) + lab.encode()
    return out + b"\0"


def rr(owner, rtype, rdata, ttl=300, rclass=1):
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def mxr(pref, exch):
    return struct.pack("!H", pref) + name(exch)


def wire(qname, answers=(), authority=(), additional=(), qtype=15):
    hdr = struct.pack("!6H", 0x1234, 0x8400, 1, len(answers), len(authority),
                      len(additional))
    return hdr + name(qname) + struct.pack("!HH", qtype, 1) + \
        b"".join(answers) + b"".join(authority) + b"".join(additional)


def rrsig(covered, signer="example.com."):
    return struct.pack("!HBBIIIH", covered, 13, 2, 300, 2000000000, 1600000000,
                       4242) + name(signer) + b"\x5a" * 32


OPT = b"\0" + struct.pack("!HHIH", 41, 1232, 0x8000, 0)


def parsed(pol, msg, opts=0, extra=512):
    return b"\x03" + pol + bytes([opts]) + struct.pack("!H", extra) + msg


def rewrite_seeds():
    legacy_apex = rrset(MX, OWN_QNAME, mx_rdata([(5, MAIL), ("pol", 0), (40, SMTP_ISP)]), 3)
    seeds = {
        "apex-legacy": built(policy(), sets=[
            legacy_apex,
            rrset(RRSIG, OWN_PREV, bytes([0, 0x12, 0x34, 0x5a]), 1),
            rrset(NS, OWN_ZONE, bytes([MAIL]), 1, advance=True),
            rrset(A, OWN_GLUE, bytes([198, 51, 100, 25]), 1, advance=True),
            rrset(AAAA, OWN_GLUE, bytes(range(16)), 1),
        ]),
        "wildcard-cname": built(policy(), qname=X_SUB, opts=0x81, sets=[
            rrset(CNAME, OWN_QNAME, bytes([MAILGATE_SUB]), 1),
            rrset(MX, OWN_NAME, mx_rdata([(7, MAIL), (8, MX_ORG)]), 2, name=MAILGATE_SUB),
            rrset(MX, OWN_COPY, mx_rdata([(9, MAIL)]), 1, name=WWW),
            rrset(A, OWN_GLUE, bytes([192, 0, 2, 7]), 1, advance=True, glue=[0, 0, 0]),
        ]),
        "compliant-split": built(policy(), sets=[
            rrset(MX, OWN_QNAME, mx_rdata([("pol", 0)]), 1),
            rrset(MX, OWN_QNAME, mx_rdata([("pol", 1)]), 1),
            rrset(MX, OWN_NAME, mx_rdata([("null",)]), 1, name=SUB),
        ]),
        "big-policy": built(policy(big=True), size=3, sets=[
            rrset(MX, OWN_QNAME, mx_rdata([("pol", k) for k in range(40)]), 40),
            rrset(MX, OWN_NAME, mx_rdata([(k, LONG) for k in range(20)]), 20, name=MANY),
        ]),
        "enomem-signed": built(policy(ttl=7), opts=0x40 | 0x10 | 0x04 | 0x01, fail=2, sets=[
            legacy_apex,
            rrset(RRSIG, OWN_PREV, bytes([0, 0x12, 0x34, 0x5a]), 1),
            rrset(MX, OWN_NAME, mx_rdata([(1, LONG)]), 1, name=SUB),
            rrset(A, OWN_GLUE, bytes([192, 0, 2, 1]), 1, advance=True),
        ]),
        "audit-apex-scope": built(policy(mode_audit=True, apex=True), sets=[
            legacy_apex,
            rrset(MX, OWN_NAME, mx_rdata([(3, MAIL)]), 1, name=SUB),
        ]),
        "preanswer-own-set": built(policy(exchanges=[0, 1, 4]), pre=3, sets=[
            rrset(TXT, OWN_QNAME, bytes([5, 1, 2, 3, 4]), 1),
            rrset(MX, OWN_NAME, mx_rdata([(1, MAIL)]), 1, name=A_EX, advance=True),
        ]),
        "nullmx-replace": built(policy(nullmx_replace=True, zone=1), qname=EXAMPLE_UP, sets=[
            rrset(MX, OWN_QNAME, mx_rdata([("null",)]), 1),
            rrset(SOA, OWN_ZONE, bytes([MAIL, MAIL]) + bytes(20), 1, advance=True),
        ]),
    }
    msg = wire("ExAmple.com.", answers=[
        rr(b"\xc0\x0c", 15, mxr(5, "mail.example.com.")),
        rr(b"\xc0\x0c", 15, mxr(10, "france.security-mail.net.")),
        rr(b"\xc0\x0c", 15, mxr(40, "smtp.isp.net.")),
        rr(b"\xc0\x0c", 46, rrsig(15)),
    ], authority=[
        rr(b"\xc0\x0c", 2, name("ns1.example.com.")),
    ], additional=[
        rr(name("mail.example.com."), 1, bytes([198, 51, 100, 25])),
        rr(name("mail.example.com."), 28, bytes(16)),
        rr(name("mail.example.com."), 46, rrsig(1)),
        rr(name("france.security-mail.net."), 1, bytes([198, 51, 100, 10])),
        OPT,
    ])
    seeds["parsed-apex"] = parsed(policy(), msg, opts=0x04)
    msg = wire("a.b.example.com.", answers=[
        rr(b"\xc0\x0c", 5, name("mx.sub.example.com.")),
        rr(name("mx.sub.example.com."), 15, mxr(10, "france.security-mail.net.")),
        rr(name("mx.sub.example.com."), 15, mxr(20, "europe.security-mail.net.")),
        rr(name("MX.sub.example.com."), 15, mxr(30, "backup.example.org.")),
    ], additional=[rr(name("backup.example.org."), 1, bytes([198, 51, 100, 1])), OPT])
    seeds["parsed-cname"] = parsed(policy(), msg, opts=0x01)
    return seeds


def config_seeds():
    return {
        "default": b"\x00" + b"10 france.security-mail.net.\n20 europe.security-mail.net.",
        "escapes": b"\x08" + b"10 a\\.b.example.\n20 x\\032y.example\n30 \\065bc.",
        "bad": b"\x01" + b"70000 a.\n10 .\n\n  \nx y\n10 a..b\n10 a b",
        "dup": b"\x02" + b"10 A.example\n10 a.example.",
        "spaces": b"\x80" + b"  5\tmail.example.com  \n65535 " + b"a" * 63 + b".x.",
        "many": b"\x00" + b"\n".join(b"%d mx%d.example." % (i, i) for i in range(33)),
    }


def main():
    for harness, seeds in (("rewrite", rewrite_seeds()), ("config", config_seeds())):
        d = os.path.join(HERE, "corpus", harness)
        os.makedirs(d, exist_ok=True)
        for n, data in seeds.items():
            with open(os.path.join(d, n), "wb") as f:
                f.write(data)
        print("%s: %d seeds, %d bytes" % (harness, len(seeds), sum(map(len, seeds.values()))))


if __name__ == "__main__":
    main()
