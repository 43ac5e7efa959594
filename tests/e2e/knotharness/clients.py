# SPDX-License-Identifier: GPL-3.0-or-later
"""The clients a user checks answers with, against a server on 127.0.0.1:
kdig (+json, parsed), kdig and dig text, nslookup, delv (validation), a raw
wire client that keeps the query's spelling (0x20) and a strict one for
hostile packets, and Debian's unbound as a validating resolver."""

import json
import os
import re
import shutil
import socket
import struct
import tempfile
import time

from .common import free_port, poll, read_file, remove_dir, run, spawn, stopped

KDIG = shutil.which("kdig") or "/usr/bin/kdig"
DIG = shutil.which("dig") or "/usr/bin/dig"
NSLOOKUP = shutil.which("nslookup") or "/usr/bin/nslookup"
DELV = shutil.which("delv")
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN",
          4: "NOTIMP", 5: "REFUSED", 9: "NOTAUTH", 16: "BADVERS"}
TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15,
         "TXT": 16, "AAAA": 28, "DNAME": 39, "OPT": 41, "DS": 43, "RRSIG": 46,
         "NSEC": 47, "DNSKEY": 48, "NSEC3": 50, "NSEC3PARAM": 51,
         "CDS": 59, "CDNSKEY": 60, "IXFR": 251, "AXFR": 252, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}


# ----------------------------------------------------------------------------
# A parsed response

class Result:
    """A parsed DNS response.

    rcode     'NOERROR', 'SERVFAIL', ...
    aa, tc, ad, cd: booleans
    answer, authority, additional: lists of (owner, ttl, type, rdata text);
              OPT is not listed (see .opt); owners and names lower-case as
              kdig prints them (the wire client keeps the server's spelling)
    raw       kdig's JSON object, or the message (bytes) for the wire client
    hex       {section: [(owner, ttl, type, rdata hex)]} (kdig only)
    """

    def __init__(self):
        self.rcode = None
        self.aa = self.tc = self.ad = self.cd = False
        self.answer, self.authority, self.additional = [], [], []
        self.opt = None
        self.raw = None
        self.hex = {}
        self.stderr = ""

    def records(self, section="answer", rtype=None, owner=None):
        """The records of SECTION, of type RTYPE and at OWNER (any case)."""
        out = []
        for r in getattr(self, section):
            if rtype and r[2] != rtype:
                continue
            if owner and r[0].lower() != owner.lower().rstrip(".") + ".":
                continue
            out.append(r)
        return out

    def mx(self, section="answer", owner=None):
        """Sorted list of (preference, exchange lower-case) in SECTION."""
        out = []
        for r in self.records(section, "MX", owner):
            pref, exch = r[3].split()
            out.append((int(pref), exch.lower()))
        return sorted(out)

    def all_records(self):
        return self.answer + self.authority + self.additional

    def text(self):
        return "\n".join(["rcode %s aa %d tc %d" % (self.rcode, self.aa, self.tc)] +
                         ["%-10s %s %d %s %s" % ((sec,) + r) for sec in
                          ("answer", "authority", "additional")
                          for r in getattr(self, sec)])

    def __repr__(self):
        return "<Result %s>" % self.text().replace("\n", " | ")


def _from_kdig_json(obj):
    res = Result()
    res.raw = obj
    res.rcode = RCODES.get(obj.get("RCODE"), str(obj.get("RCODE")))
    res.aa = bool(obj.get("AA"))
    res.tc = bool(obj.get("TC"))
    res.ad = bool(obj.get("AD"))
    res.cd = bool(obj.get("CD"))
    if "EDNS" in obj:  # kdig 3.4 prints OPT as a separate "EDNS" object
        res.opt = obj["EDNS"]
    for sec, key in (("answer", "answerRRs"), ("authority", "authorityRRs"),
                     ("additional", "additionalRRs")):
        for rr in obj.get(key, []):
            tname = rr.get("TYPEname") or "TYPE%d" % rr["TYPE"]
            if tname == "OPT":  # kdig 3.2 lists OPT among the records
                res.opt = rr
                continue
            rdata = rr.get("rdata" + tname)
            if rdata is None:
                rdata = "\\# %d %s" % (rr.get("RDLENGTH", 0), rr.get("RDATAHEX", ""))
            rec = (rr["NAME"], rr["TTL"], tname, rdata)
            getattr(res, sec).append(rec)
            res.hex.setdefault(sec, []).append((rr["NAME"], rr["TTL"], tname,
                                                rr.get("RDATAHEX", "")))
    return res


# ----------------------------------------------------------------------------
# kdig, dig, nslookup

def kdig(port, name, rtype="MX", tcp=False, edns=True, bufsize=None, do=False, cd=False,
         extra=(), timeout=5, host="127.0.0.1"):
    """Query with kdig +json; return Result (for AXFR/IXFR a list of Result).
    AssertionError if kdig got no answer."""
    cmd = [KDIG, "@" + host, "-p", str(port), "+json", "+ignore", "+timeout=2", "+retry=1"]
    xfr = rtype.upper().startswith(("AXFR", "IXFR"))
    cmd.append("+tcp" if tcp or xfr else "+notcp")
    if bufsize is not None:
        cmd.append("+bufsize=%d" % bufsize)
    else:
        cmd.append("+edns" if edns else "+noedns")
    if do:
        cmd.append("+dnssec")
    if cd:
        cmd.append("+cdflag")
    cmd += list(extra)
    cmd += ["-t", rtype, name]
    rc, out, err = run(cmd, timeout=timeout + 10)
    try:
        obj = json.loads(out)
    except ValueError:
        obj = None
    # kdig prints "{ }" when nothing came back; for a transfer answered
    # with an error it exits 1 but still prints the reply.
    if not obj or (rc != 0 and not xfr):
        raise AssertionError("kdig %s failed (%d): %s %s" % (" ".join(cmd[1:]), rc, out, err))
    if xfr:
        msgs = [_from_kdig_json(o) for o in (obj if isinstance(obj, list) else [obj])]
        for m in msgs:
            m.stderr = err
        return msgs
    if isinstance(obj, list):
        obj = obj[0]
    res = _from_kdig_json(obj)
    res.stderr = err
    return res


def kdig_text(port, *args, timeout=10):
    """Plain kdig output (what a user reads); returns (rc, output)."""
    rc, out, err = run([KDIG, "@127.0.0.1", "-p", str(port)] + list(args), timeout=timeout)
    return rc, out + err


def dig(port, *args, timeout=10):
    """Plain dig (BIND) output, no recursion asked; returns (rc, output)."""
    rc, out, err = run([DIG, "@127.0.0.1", "-p", str(port), "+norec", "+tries=2",
                        "+time=2"] + list(args), timeout=timeout)
    return rc, out + err


def dig_available():
    return os.path.exists(DIG)


def nslookup(port, name, rtype="mx", timeout=10):
    """nslookup -type=RTYPE NAME; returns (rc, output)."""
    rc, out, err = run([NSLOOKUP, "-port=%d" % port, "-type=%s" % rtype, name, "127.0.0.1"],
                       timeout=timeout)
    return rc, out + err


# ----------------------------------------------------------------------------
# delv: a validating client

class Delv(Result):
    """What delv printed: .validated (`; fully validated`), .output (all of
    it), and its records in .answer (owners as delv prints them)."""

    def __init__(self, output):
        super().__init__()
        self.output = output
        self.validated = "; fully validated" in output
        for m in re.finditer(r"^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.*?)\s*$", output, re.M):
            self.answer.append((m.group(1), int(m.group(2)), m.group(3), m.group(4)))

    def text(self):
        return self.output


def delv_available():
    return DELV is not None


def delv(port, zone, name, rtype, anchor, timeout=30):
    """delv @127.0.0.1 -a ANCHOR +root=ZONE NAME RTYPE; return Delv.
    AssertionError if delv is missing or times out."""
    if DELV is None:
        raise AssertionError("delv not installed")
    try:
        rc, out, err = run([DELV, "@127.0.0.1", "-p", str(port), "-a", anchor, "+root=" + zone,
                            name, rtype], timeout=timeout)
    except Exception as e:  # noqa: BLE001 - TimeoutExpired, OSError
        raise AssertionError("delv %s %s: %s" % (name, rtype, e))
    return Delv(out + err)


# ----------------------------------------------------------------------------
# The wire: queries built by hand

def qname_wire(name):
    """NAME in wire form, spelled as given."""
    out = b""
    for lab in name.rstrip(".").split("."):
        if lab:
            b = lab.encode("latin-1")
            out += bytes([len(b)]) + b
    return out + b"\0"


def opt_rr(payload=1232, do=False, version=0, options=()):
    """An OPT record: PAYLOAD, the DO bit, an EDNS VERSION, OPTIONS ((code,
    bytes) pairs)."""
    rdata = b"".join(struct.pack("!HH", c, len(d)) + d for c, d in options)
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\0" + struct.pack("!HHIH", 41, payload, ttl, len(rdata)) + rdata


def make_query(name, qtype=15, qclass=1, qid=None, flags=0, questions=None, edns=None):
    """A query message: NAME QTYPE QCLASS (or QUESTIONS, a list of (name,
    type, class)), header FLAGS, message ID QID (random by default); EDNS
    None (no OPT) or bytes of one OPT record or more."""
    if qid is None:
        qid = struct.unpack("!H", os.urandom(2))[0]
    if isinstance(qtype, str):
        qtype = TYPES[qtype]
    qs = questions if questions is not None else [(name, qtype, qclass)]
    body = b"".join(qname_wire(n) + struct.pack("!HH", t, c) for n, t, c in qs)
    ar = 0 if edns is None else edns.count(b"\0\x00\x29") or 1
    hdr = struct.pack("!6H", qid, flags, len(qs), 0, 0, ar)
    return hdr + body + (edns or b"")


def udp_exchange(port, msg, timeout=3.0, host="127.0.0.1"):
    """Send MSG over UDP (three tries) and return the reply with its ID;
    TimeoutError without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        for _ in range(3):
            s.sendto(msg, (host, port))
            try:
                while True:
                    data, _ = s.recvfrom(65535)
                    if data[:2] == msg[:2]:
                        return data
            except socket.timeout:
                continue
    raise TimeoutError("no UDP answer from %s@%d" % (host, port))


def tcp_exchange(port, msg, timeout=3.0, host="127.0.0.1"):
    """Send MSG over TCP and return the reply: ConnectionError (an OSError)
    if none comes within TIMEOUT seconds, ValueError if it is cut short."""
    buf = b""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack("!H", len(msg)) + msg)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = s.recv(65537)
                if not chunk:
                    break
                buf += chunk
                if len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                    return buf[2:2 + struct.unpack("!H", buf[:2])[0]]
        except (socket.timeout, ConnectionResetError):
            pass
    if len(buf) < 2:
        raise ConnectionError("no TCP reply from %s@%d" % (host, port))
    raise ValueError("cut TCP reply from %s@%d: %d bytes of %d" %
                     (host, port, len(buf) - 2, struct.unpack("!H", buf[:2])[0]))


def _read_name(msg, off):
    labels, jumped, end = [], False, None
    for _ in range(128):
        ln = msg[off]
        if ln & 0xC0 == 0xC0:
            if not jumped:
                end = off + 2
            off = ((ln & 0x3F) << 8) | msg[off + 1]
            jumped = True
            continue
        off += 1
        if ln == 0:
            break
        labels.append(msg[off:off + ln].decode("latin-1"))
        off += ln
    else:
        raise ValueError("name loop")
    return ".".join(labels) + ".", (end if jumped else off)


def _rdata_text(msg, off, rtype, rdlen):
    if rtype == 15:
        pref = struct.unpack("!H", msg[off:off + 2])[0]
        name, _ = _read_name(msg, off + 2)
        return "%d %s" % (pref, name)
    if rtype == 1 and rdlen == 4:
        return socket.inet_ntoa(msg[off:off + 4])
    if rtype in (2, 5, 12):
        return _read_name(msg, off)[0]
    return "\\# %d %s" % (rdlen, msg[off:off + rdlen].hex().upper())


def parse_wire(msg):
    """Result of a message; owners and names keep the server's spelling."""
    res = Result()
    res.raw = msg
    qid, flags, qd, an, ns, ar = struct.unpack("!6H", msg[:12])
    res.aa = bool(flags & 0x0400)
    res.tc = bool(flags & 0x0200)
    res.ad = bool(flags & 0x0020)
    res.cd = bool(flags & 0x0010)
    rcode = flags & 0xF
    off = 12
    for _ in range(qd):
        res.qname, off = _read_name(msg, off)
        off += 4
    for sec, cnt in (("answer", an), ("authority", ns), ("additional", ar)):
        for _ in range(cnt):
            owner, off = _read_name(msg, off)
            rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10
            if rtype == 41:
                res.opt = {"CLASS": rclass, "TTL": ttl}
                rcode |= (ttl >> 24) << 4
            else:
                getattr(res, sec).append(
                    (owner, ttl, TYPE_NAMES.get(rtype, "TYPE%d" % rtype),
                     _rdata_text(msg, off, rtype, rdlen)))
            off += rdlen
    res.rcode = RCODES.get(rcode, str(rcode))
    return res


def wire_query(port, name, rtype, tcp=False, edns=True, bufsize=1232,
               do=False, cd=False, timeout=3.0, host="127.0.0.1", qid=None):
    """Send one query with NAME spelled exactly as given (message ID QID,
    random by default); return Result."""
    q = make_query(name, rtype, qid=qid, flags=0x0010 if cd else 0,
                   edns=opt_rr(bufsize, do=do) if edns else None)
    exchange = tcp_exchange if tcp else udp_exchange
    return parse_wire(exchange(port, q, timeout=timeout, host=host))


# Strict parsing, for replies to hostile queries.

def _wire_len(name):
    return sum(len(l) + 1 for l in name.rstrip(".").split(".")) + 1


def _read_name_strict(msg, off):
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
    if _wire_len(name) > 255 and name != ".":
        raise ValueError("name too long")
    return name, (end if end is not None else off)


def parse_strict(msg):
    """Strict parse of a reply (ValueError on anything malformed): dict with
    id, rcode, tc, qd, records [(section 'an'|'ns'|'ar', owner lower-case,
    type, class, data)] where data is (pref, exchange) for MX, else None."""
    if len(msg) < 12:
        raise ValueError("short reply")
    qid, flags, qd, an, ns, ar = struct.unpack("!6H", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = _read_name_strict(msg, off)
        off += 4
    recs = []
    rcode = flags & 0xF
    for sec, cnt in (("an", an), ("ns", ns), ("ar", ar)):
        for _ in range(cnt):
            owner, off = _read_name_strict(msg, off)
            if off + 10 > len(msg):
                raise ValueError("cut RR header")
            rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10
            if off + rdlen > len(msg):
                raise ValueError("cut rdata")
            data = None
            if rtype == 15:
                pref = struct.unpack("!H", msg[off:off + 2])[0]
                exch, _ = _read_name_strict(msg, off + 2)
                data = (pref, exch)
            elif rtype == 41:
                rcode |= (ttl >> 24) << 4
            recs.append((sec, owner, rtype, rclass, data))
            off += rdlen
    if off != len(msg):
        raise ValueError("trailing bytes")
    return {"id": qid, "rcode": rcode, "tc": bool(flags & 0x0200), "qd": qd,
            "records": recs}


def mx_groups(reply, zone=None):
    """The MX records of a parse_strict() reply by (section, owner); only
    owners in ZONE (a name with the final dot) when given."""
    groups = {}
    for sec, owner, rtype, _, data in reply["records"]:
        if rtype != 15:
            continue
        if zone is not None and owner != zone and not owner.endswith("." + zone):
            continue
        groups.setdefault((sec, owner), []).append(data)
    return groups


# ----------------------------------------------------------------------------
# Every client, bound to a server's port

class Clients:
    """Queries to self.port on 127.0.0.1 (mixed into Knotd and Unbound)."""

    port = None

    def kdig(self, name, rtype="MX", **kw):
        """kdig() against this server: Result (a list for AXFR/IXFR)."""
        return kdig(self.port, name, rtype, **kw)

    def kdig_text(self, *args, timeout=10):
        """kdig_text(): (rc, output) of plain kdig ARGS."""
        return kdig_text(self.port, *args, timeout=timeout)

    def dig(self, *args, timeout=10):
        """dig(): (rc, output) of plain dig ARGS."""
        return dig(self.port, *args, timeout=timeout)

    def nslookup(self, name, rtype="mx", timeout=10):
        """nslookup(): (rc, output)."""
        return nslookup(self.port, name, rtype, timeout=timeout)

    def wire(self, name, rtype="MX", **kw):
        """wire_query(): NAME keeps its spelling, and so do the owners the
        server wrote (0x20)."""
        return wire_query(self.port, name, rtype, **kw)

    def exchange(self, msg, tcp=False, timeout=3.0):
        """udp_exchange() or tcp_exchange() of a raw message."""
        return (tcp_exchange if tcp else udp_exchange)(self.port, msg, timeout=timeout)


# ----------------------------------------------------------------------------
# A validating resolver

class Unbound(Clients):
    """Debian's unbound in the foreground on a free port of 127.0.0.1: a
    validating resolver with a stub zone to KNOTD for each of ZONES and
    their current KSKs as trust anchors, a cache of its own (a new instance
    starts empty). OPTIONS: more `server:` items, e.g.
    {"aggressive-nsec": "no"}. Queried like a server (kdig, RD set, as an
    MTA's stub resolver would); stopped on exit like knotd."""

    START_TIMEOUT = 20.0

    def __init__(self, knotd, zones, options=None):
        self.knotd = knotd
        self.zones = [z.rstrip(".") for z in zones]
        self.options = dict(options or {})
        self._proc = None
        self.dir = None
        self.port = None

    @staticmethod
    def available():
        return os.path.exists(UNBOUND)

    def render_conf(self):
        server = {
            "verbosity": 1, "interface": "127.0.0.1", "port": self.port,
            "do-ip6": "no", "do-daemonize": "no", "use-syslog": "no",
            "logfile": '"%s"' % os.path.join(self.dir, "unbound.log"),
            "username": '""', "chroot": '""', "pidfile": '""',
            "directory": '"%s"' % self.dir,
            "do-not-query-localhost": "no", "module-config": '"validator iterator"',
            "aggressive-nsec": "yes", "val-log-level": 2, "num-threads": 1,
        }
        server.update(self.options)
        lines = ["server:"] + ["    %s: %s" % kv for kv in server.items()]
        for z in self.zones:
            # The zone's KSKs, and the special-use TLD unbound serves itself.
            for k in self.knotd.ksks(z):
                lines.append('    trust-anchor: "%s. DNSKEY %s"' % (z, k))
            tld = z.rsplit(".", 1)[-1]
            if 'local-zone: "%s." nodefault' % tld not in "\n".join(lines):
                lines.append('    local-zone: "%s." nodefault' % tld)
        lines += ["remote-control:", "    control-enable: no"]
        for z in self.zones:
            lines += ["stub-zone:", '    name: "%s."' % z,
                      "    stub-addr: 127.0.0.1@%d" % self.knotd.port]
        return "\n".join(lines) + "\n"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, et, ev, tb):
        self.stop()
        return False

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="mxf-unbound-")
        conf = os.path.join(self.dir, "unbound.conf")
        for _ in range(3):
            self.port = free_port()
            with open(conf, "w") as f:
                f.write(self.render_conf())
            self._proc = spawn(self, [UNBOUND, "-d", "-c", conf],
                              os.path.join(self.dir, "unbound.stderr"))

            def listening():
                if self._proc.poll() is not None:
                    return "exited"
                try:
                    # Any answer will do: unbound is listening.
                    wire_query(self.port, "localhost.", "A", timeout=0.5)
                    return "up"
                except (OSError, ValueError):
                    return None
            if poll(listening, timeout=self.START_TIMEOUT, step=0.05) == "up":
                return self
            self.stop(keep_dir=True)
        raise RuntimeError("unbound did not start:\n%s\n%s" % (
            self.log_text()[-3000:], read_file(os.path.join(self.dir, "unbound.stderr"))))

    def stop(self, check=False, keep_dir=False):
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except Exception:  # noqa: BLE001 - TimeoutExpired
                    self._proc.kill()
                    self._proc.wait(timeout=5)
            self._proc = None
        stopped(self)
        if not keep_dir and self.dir:
            remove_dir(self.dir)
            self.dir = None

    def log_text(self):
        return read_file(os.path.join(self.dir, "unbound.log")) if self.dir else ""

