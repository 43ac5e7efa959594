# SPDX-License-Identifier: GPL-3.0-or-later
"""End-to-end harness: a real knotd on 127.0.0.1 and real clients.

Python 3 standard library only. Every wait is bounded in time; every knotd
started here is stopped on exit (knotc stop, then SIGTERM, then SIGKILL),
also when a test fails, at interpreter exit and if this process dies
(PR_SET_PDEATHSIG).

Environment:
  MXFILTER_SO          the built module (mxfilter.so); tests skip without it
  MXFILTER_FAULTY_SO   the fault-injection build (MXFILTER_FAULT=enomem)
  MXFILTER_PRELOAD     sanitizer runtime(s) to LD_PRELOAD into knotd; a
                       sanitizer report on knotd's stderr fails the test
  MXFILTER_KEEP        keep the temporary directories (debugging)
  MXFILTER_MODULE_DIR  knotd's module directory (default: pkg-config's
                       module_instdir of knotd)

An installed mod-mxfilter (a package or `meson install` in knotd's module
directory, which knotd loads by itself) would make knotd refuse every
configuration that also loads the build tree's module ("duplicate module").
So when one is installed, every Knot program that reads a configuration
(knotd, `knotc -c`, keymgr) runs in a private mount namespace where an empty
directory hides the module directory (as root; otherwise in a user
namespace where the kernel allows it), and the tests see the build tree's
module only. Where neither works, the harness refuses with a message naming
the installed file.
"""

import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"
KNOTC = shutil.which("knotc") or "/usr/sbin/knotc"
KDIG = shutil.which("kdig") or "/usr/bin/kdig"
NSLOOKUP = shutil.which("nslookup") or "/usr/bin/nslookup"

FILTER_SET = [(10, "france.security-mail.net."), (20, "europe.security-mail.net.")]

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN",
          4: "NOTIMP", 5: "REFUSED", 9: "NOTAUTH", 16: "BADVERS"}
TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15,
         "TXT": 16, "AAAA": 28, "DNAME": 39, "OPT": 41, "DS": 43, "RRSIG": 46,
         "NSEC": 47, "DNSKEY": 48, "NSEC3": 50, "NSEC3PARAM": 51,
         "CDS": 59, "CDNSKEY": 60, "IXFR": 251, "AXFR": 252, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}

SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|"
                          r"UndefinedBehaviorSanitizer|runtime error:|"
                          r"ThreadSanitizer")

_RUNNING = set()


def _cleanup_all():
    for k in list(_RUNNING):
        try:
            k.stop(check=False)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_cleanup_all)


def _sigterm(signum, frame):
    # meson's timeout sends SIGTERM: turn it into SystemExit so the
    # context managers and atexit stop every knotd.
    raise SystemExit(128 + signum)


if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _sigterm)


def _pdeathsig():
    """Child side of Popen: die with the test process."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


def module_so(var="MXFILTER_SO"):
    """Path of a built module, or None."""
    path = os.environ.get(var, "")
    return path if path and os.path.exists(path) else None


def require_module(var="MXFILTER_SO"):
    path = module_so(var)
    if path is None:
        raise unittest.SkipTest("%s not set or missing (%r): build the module "
                                "and run through meson test" %
                                (var, os.environ.get(var)))
    return path


# ----------------------------------------------------------------------------
# Configuration rendering

class Raw(str):
    """A configuration value written verbatim (no quoting)."""


def yval(v):
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(yval(x) for x in v) + " ]"
    s = str(v)
    if s == "" or re.search(r"[\s:#,\[\]{}\"']", s):
        return json.dumps(s)
    return s


def render_section(name, items):
    """items: list of dicts (each an 'id'-keyed list entry) or a raw str."""
    if isinstance(items, str):
        return items.rstrip("\n") + "\n"
    out = [name + ":"]
    for it in items:
        first = True
        for k, v in it.items():
            out.append(("  - " if first else "    ") + "%s: %s" % (k, yval(v)))
            first = False
    return "\n".join(out) + "\n"


def zone_text(domain, body="", serial=1, ttl=3600):
    """A zone file with SOA and NS plus BODY (lines relative to the origin)."""
    origin = domain.rstrip(".") + "."
    return ("$ORIGIN %s\n$TTL %d\n"
            "@ SOA ns1 hostmaster %d 3600 900 604800 300\n"
            "@ NS ns1\n"
            "ns1 A 127.0.0.1\n" % (origin, ttl, serial)) + \
        "\n".join(l.strip() for l in body.strip("\n").splitlines()) + "\n"


class Zone:
    def __init__(self, domain, body="", module=None, serial=1, text=None,
                 template=None, extra=None, acl=True):
        self.domain = domain.rstrip(".")
        self.text = text if text is not None else zone_text(domain, body, serial)
        self.module = module
        self.template = template
        self.extra = extra or {}
        self.acl = acl


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port on 127.0.0.1")


def sanitizer_env(base=None):
    """Environment for a Knot program that loads the module: with
    $MXFILTER_PRELOAD, the sanitizer runtime preloaded (knotd and knotc are
    not instrumented, the module is)."""
    env = dict(os.environ if base is None else base)
    pre = os.environ.get("MXFILTER_PRELOAD")
    if pre:
        env["LD_PRELOAD"] = pre
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1"
    return env


def check_sanitizer(output, what):
    if SANITIZER_RE.search(output or ""):
        raise AssertionError("sanitizer report from %s:\n%s" % (what, output[-6000:]))


def run(cmd, timeout=20, env=None, input=None):
    """Run CMD, return (rc, stdout, stderr)."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=env, input=input,
                       universal_newlines=True)
    return p.returncode, p.stdout, p.stderr


def _module_dir():
    d = os.environ.get("MXFILTER_MODULE_DIR")
    if d:
        return d
    try:
        rc, out, _ = run(["pkg-config", "--variable=module_instdir", "knotd"], timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip() if rc == 0 and out.strip() else None


_INSTALLED = []  # [path or None], computed once


def installed_module():
    """An installed copy of mod-mxfilter that knotd loads by itself (a .so in
    its module directory declaring the module), or None."""
    if not _INSTALLED:
        found = None
        d = _module_dir()
        if d and os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                path = os.path.join(d, name)
                if not name.endswith(".so") or not os.path.isfile(path):
                    continue
                try:
                    with open(path, "rb") as f:
                        if b"mod-mxfilter\0" in f.read():
                            found = path
                            break
                except OSError:
                    continue
        _INSTALLED.append((found, d))
    return _INSTALLED[0][0]


_HIDE = []  # [argv prefix], computed once


def _hide_prefix():
    """The command prefix that runs a program with the module directory
    hidden, tried once; RuntimeError naming the installed file if none works."""
    if _HIDE:
        return _HIDE[0]
    inst, moddir = installed_module(), _INSTALLED[0][1]
    empty = tempfile.mkdtemp(prefix="mxf-nomod-")
    atexit.register(shutil.rmtree, empty, True)
    bind = ["sh", "-ec", 'mount --bind "$1" "$2"; shift 2; exec "$@"', "mxf-hide",
            empty, moddir]
    tries = []
    if os.geteuid() == 0:
        tries.append(["unshare", "--mount", "--propagation", "private"] + bind)
    tries.append(["unshare", "--user", "--map-root-user", "--mount",
                  "--propagation", "private"] + bind)
    why = []
    for pre in tries:
        try:
            rc, out, err = run(pre + ["sh", "-c", 'ls -A "$0"', moddir], timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            why.append(str(e))
            continue
        if rc == 0 and out.strip() == "":
            _HIDE.append(pre)
            return pre
        why.append((err or out).strip())
    raise RuntimeError(
        "mod-mxfilter is installed as %s, and knotd loads it by itself: it "
        "would refuse every configuration that also loads the build tree's "
        "module (duplicate module). Hiding %s in a private mount namespace "
        "failed (%s): run the tests as root, or remove the installed copy "
        "(README.md, Debian package)." % (inst, moddir, "; ".join(why)))


def knot_argv(argv):
    """ARGV of a Knot program that reads a configuration (knotd, knotc -c,
    keymgr), run so that an installed mod-mxfilter cannot clash with the
    build tree's: unchanged when none is installed."""
    if installed_module() is None:
        return list(argv)
    return _hide_prefix() + list(argv)


def conf_check(conf_text, timeout=20):
    """Run `knotc -c FILE conf-check` on CONF_TEXT; return (rc, output)."""
    d = tempfile.mkdtemp(prefix="mxf-cc-")
    try:
        path = os.path.join(d, "knot.conf")
        with open(path, "w") as f:
            f.write(conf_text)
        rc, out, err = run(knot_argv([KNOTC, "-c", path, "conf-check"]), timeout=timeout,
                           env=sanitizer_env())
        check_sanitizer(out + err, "knotc conf-check")
        return rc, out + err
    finally:
        shutil.rmtree(d, ignore_errors=True)


# The start of a knot.conf for knotd_try_start(): its own rundir and storage
# (@RUNDIR@), a port (@PORT@), log to stderr, mod-mxfilter from @SO@. Add
# the sections that follow the module (keystore, policy, zone).
TRY_START_CONF = """server:
  rundir: @RUNDIR@
  listen: 127.0.0.1@@PORT@
log:
  - target: stderr
    any: info
database:
  storage: @RUNDIR@
module:
  - id: mod-mxfilter
    file: @SO@
"""


def knotd_try_start(conf_text, timeout=8, env=None):
    """Start knotd on CONF_TEXT; return (rc, output) if it exits within
    TIMEOUT, else stop it and return (None, output)."""
    d = tempfile.mkdtemp(prefix="mxf-ks-")
    try:
        path = os.path.join(d, "knot.conf")
        with open(path, "w") as f:
            f.write(conf_text.replace("@RUNDIR@", d))
        p = subprocess.Popen(knot_argv([KNOTD, "-c", path]), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=sanitizer_env(env),
                             universal_newlines=True, preexec_fn=_pdeathsig)
        try:
            out, _ = p.communicate(timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                out, _ = p.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate(timeout=5)
            rc = None
        check_sanitizer(out, "knotd")
        return rc, out
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------------
# DNS results

class Result:
    """A parsed DNS response.

    rcode     'NOERROR', 'SERVFAIL', ...
    aa, tc    booleans
    answer, authority, additional: lists of (owner, ttl, type, rdata text);
              OPT is not listed (see .opt); owners and names lower-case as
              kdig prints them (use Knotd.wire() for 0x20 spelling)
    raw       kdig's JSON object (or the wire parse)
    """

    def __init__(self):
        self.rcode = None
        self.aa = self.tc = self.ad = self.cd = False
        self.answer, self.authority, self.additional = [], [], []
        self.opt = None
        self.raw = None
        self.hex = {}

    def records(self, section="answer", rtype=None, owner=None):
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


# Minimal wire format client: keeps the owner names' spelling as sent.

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


def _qname_wire(name):
    out = b""
    for lab in name.rstrip(".").split("."):
        if lab:
            out += bytes([len(lab)]) + lab.encode("latin-1")
    return out + b"\0"


def parse_wire(msg):
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
    if qid is None:
        qid = struct.unpack("!H", os.urandom(2))[0]
    flags = 0x0010 if cd else 0
    q = struct.pack("!6H", qid, flags, 1, 0, 0, 1 if edns else 0)
    q += _qname_wire(name) + struct.pack("!HH", TYPES[rtype] if isinstance(rtype, str) else rtype, 1)
    if edns:
        q += b"\0" + struct.pack("!HHIH", 41, bufsize, 0x8000 if do else 0, 0)
    if tcp:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack("!H", len(q)) + q)
            buf = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = s.recv(65537)
                if not chunk:
                    break
                buf += chunk
                if len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                    break
            ln = struct.unpack("!H", buf[:2])[0]
            msg = buf[2:2 + ln]
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            msg = None
            for _ in range(3):
                s.sendto(q, (host, port))
                try:
                    while True:
                        msg, _ = s.recvfrom(65535)
                        if msg[:2] == q[:2]:
                            break
                    break
                except socket.timeout:
                    continue
            if msg is None:
                raise TimeoutError("no UDP answer from %s@%d" % (host, port))
    return parse_wire(msg)


# ----------------------------------------------------------------------------
# A validating resolver

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"


class Unbound:
    """Debian's unbound in the foreground on a free port of 127.0.0.1: a
    validating resolver with a stub zone to KNOTD for each of ZONES and
    their current KSKs as trust anchors, a cache of its own (a new instance
    starts empty). OPTIONS: more `server:` items, e.g.
    {"aggressive-nsec": "no"}. Queried with kdig (+json, RD set, as an MTA's
    stub resolver would); stopped on exit like knotd."""

    START_TIMEOUT = 20.0

    def __init__(self, knotd, zones, options=None):
        self.knotd = knotd
        self.zones = [z.rstrip(".") for z in zones]
        self.options = dict(options or {})
        self.proc = None
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
            err = open(os.path.join(self.dir, "unbound.stderr"), "a")
            self.proc = subprocess.Popen([UNBOUND, "-d", "-c", conf], stdout=err,
                                         stderr=err, stdin=subprocess.DEVNULL,
                                         preexec_fn=_pdeathsig)
            err.close()
            _RUNNING.add(self)
            deadline = time.monotonic() + self.START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    # Any answer will do: unbound is listening.
                    wire_query(self.port, "localhost.", "A", timeout=0.5)
                    return self
                except (OSError, ValueError):
                    time.sleep(0.05)
            self.stop(keep_dir=True)
        raise RuntimeError("unbound did not start:\n%s\n%s" % (
            self.log_text()[-3000:], Knotd._read(os.path.join(self.dir, "unbound.stderr"))))

    def stop(self, check=False, keep_dir=False):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            self.proc = None
        _RUNNING.discard(self)
        if not keep_dir and self.dir:
            if os.environ.get("MXFILTER_KEEP"):
                sys.stderr.write("kept %s\n" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def log_text(self):
        return Knotd._read(os.path.join(self.dir, "unbound.log")) if self.dir else ""

    def kdig(self, *args, **kw):
        """Knotd.kdig against the resolver (it only needs self.port)."""
        return Knotd.kdig(self, *args, **kw)


# ----------------------------------------------------------------------------
# The server

class Knotd:
    """A knotd instance on 127.0.0.1 with its own temp dir.

    zones          list of Zone
    mod_mxfilter   list of dicts for the `mod-mxfilter:` section (or raw str)
    templates      list of dicts for `template:` (a default one is added)
    load_module    add `module: [ {id: mod-mxfilter, file: SO} ]`
    so             module path (default $MXFILTER_SO; skip if missing)
    env            extra environment for knotd
    extra_conf     raw text inserted after the module sections
    """

    START_TIMEOUT = 20.0

    def __init__(self, zones=(), mod_mxfilter=None, templates=(),
                 load_module=True, so=None, env=None, log_level="debug",
                 extra_conf="", name="knotd", zone_files=None, server=None,
                 allow_module_errors=False, extra_modules=(), before_start=None):
        self.zones = list(zones)
        self.mod_mxfilter = mod_mxfilter
        self.templates = list(templates)
        self.load_module = load_module
        self.so = so
        self.env_extra = dict(env or {})
        self.log_level = log_level
        self.extra_conf = extra_conf
        self.name = name
        self.zone_files = dict(zone_files or {})  # files of zones not in zones=
        self.server_extra = dict(server or {})      # more `server:` items
        self.allow_module_errors = allow_module_errors
        self.extra_modules = list(extra_modules)     # more (id, file) modules
        self.before_start = before_start  # f(self): conf written, knotd not yet running
        self.proc = None
        self.dir = None
        self.port = None
        self.sanitizer = bool(os.environ.get("MXFILTER_PRELOAD"))

    # -- paths
    @property
    def conf_path(self):
        return os.path.join(self.dir, "knot.conf")

    @property
    def log_path(self):
        return os.path.join(self.dir, "knot.log")

    @property
    def stderr_path(self):
        return os.path.join(self.dir, "knotd.stderr")

    def zone_path(self, domain):
        return os.path.join(self.dir, "zones", domain.rstrip(".") + ".zone")

    # -- configuration
    def render_conf(self):
        c = []
        c.append("server:\n  rundir: %s\n  listen: 127.0.0.1@%d\n"
                 "  background-workers: 2\n" % (self.dir, self.port) +
                 "".join("  %s: %s\n" % (k, yval(v)) for k, v in self.server_extra.items()))
        c.append("database:\n  storage: %s\n" % os.path.join(self.dir, "storage"))
        c.append("log:\n  - target: %s\n    any: %s\n" % (self.log_path, self.log_level))
        mods = ([("mod-mxfilter", self.so)] if self.load_module else []) + self.extra_modules
        if mods:
            c.append("module:\n" + "".join("  - id: %s\n    file: %s\n" % m for m in mods))
        if self.mod_mxfilter:
            c.append(render_section("mod-mxfilter", self.mod_mxfilter))
        if self.extra_conf:
            c.append(self.extra_conf.rstrip("\n") + "\n")
        c.append("acl:\n  - id: e2e-xfr\n    address: 127.0.0.0/8\n"
                 "    action: transfer\n")
        base = {"storage": os.path.join(self.dir, "zones"), "file": "%s.zone",
                "zonefile-sync": -1, "journal-content": "none"}
        tpl = [dict({"id": "default"}, **base)]
        for t in self.templates:
            # A zone uses one template only: give each the harness's storage.
            d = dict(t)
            for key, v in base.items():
                d.setdefault(key, v)
            tpl.append(d)
        c.append(render_section("template", tpl))
        if self.zones:
            zl = []
            for z in self.zones:
                d = {"domain": z.domain}
                if z.template:
                    d["template"] = z.template
                if z.acl:
                    d["acl"] = "e2e-xfr"
                if z.module:
                    d["module"] = z.module
                d.update(z.extra)
                zl.append(d)
            c.append(render_section("zone", zl))
        return "\n".join(c)

    def write_conf(self):
        """Rewrite knot.conf from the current attributes (then reload())."""
        with open(self.conf_path, "w") as f:
            f.write(self.render_conf())

    def write_zone(self, domain, text, bump_mtime=True):
        path = self.zone_path(domain)
        with open(path, "w") as f:
            f.write(text)
        if bump_mtime:
            # Knot reloads a zone file only if its mtime changed.
            st = time.time() + 2
            os.utime(path, (st, st))

    # -- life cycle
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, et, ev, tb):
        self.stop(check=(et is None))
        return False

    def start(self):
        if self.load_module and self.so is None:
            self.so = require_module()
        self.dir = tempfile.mkdtemp(prefix="mxf-e2e-")
        os.makedirs(os.path.join(self.dir, "storage"))
        os.makedirs(os.path.join(self.dir, "zones"))
        for z in self.zones:
            with open(self.zone_path(z.domain), "w") as f:
                f.write(z.text)
        for domain, text in self.zone_files.items():
            with open(self.zone_path(domain), "w") as f:
                f.write(text)
        env = dict(os.environ)
        env.update(self.env_extra)
        env = sanitizer_env(env)
        last_err = ""
        for attempt in range(3):
            self.port = free_port()
            with open(self.conf_path, "w") as f:
                f.write(self.render_conf())
            if attempt == 0 and self.before_start is not None:
                self.before_start(self)  # e.g. keymgr on the KASP database
            self._err = open(self.stderr_path, "a")
            self.proc = subprocess.Popen(knot_argv([KNOTD, "-c", self.conf_path]),
                                         stdout=self._err, stderr=self._err,
                                         stdin=subprocess.DEVNULL, env=env,
                                         preexec_fn=_pdeathsig)
            _RUNNING.add(self)
            try:
                self._wait_ready()
                return self
            except Exception as e:  # noqa: BLE001
                last_err = str(e)
                self.stop(check=False, keep_dir=True)
                if not re.search(r"(?i)cannot bind|failed to bind|address already in use",
                                 self.log_text() + self._read(self.stderr_path)):
                    break
        msg = "knotd did not start: %s\n--- conf ---\n%s\n--- log ---\n%s\n--- stderr ---\n%s" % (
            last_err, self._read(self.conf_path), self.log_text()[-4000:],
            self._read(self.stderr_path)[-4000:])
        self._rmdir()
        raise RuntimeError(msg)

    def _wait_ready(self):
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("knotd exited with %d" % self.proc.returncode)
            rc, out, _ = self._knotc_raw("status", timeout=5)
            if rc == 0:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("knotc status did not answer")
        self.wait_zones_loaded(deadline - time.monotonic())

    def wait_zones_loaded(self, timeout=15.0, zones=None):
        names = zones or [z.domain for z in self.zones]
        deadline = time.monotonic() + max(timeout, 1.0)
        pending = set(names)
        while pending and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("knotd exited with %d" % self.proc.returncode)
            for zn in list(pending):
                rc, out, _ = self._knotc_raw("zone-status", zn, timeout=5)
                if rc == 0 and re.search(r"serial: \d+", out):
                    # Zone loaded; check it answers SOA authoritatively
                    # (catalog zones are not served).
                    if zn in self._catalogs():
                        pending.discard(zn)
                        continue
                    try:
                        r = wire_query(self.port, zn, "SOA", timeout=1)
                        if r.rcode == "NOERROR" and r.aa:
                            pending.discard(zn)
                    except (OSError, ValueError):
                        pass
            if pending:
                time.sleep(0.05)
        if pending:
            raise RuntimeError("zones not loaded: %s" % sorted(pending))

    def _catalogs(self):
        return {z.domain for z in self.zones
                if str(z.extra.get("catalog-role", "")) == "interpret"}

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, check=True, keep_dir=False):
        """Stop knotd (knotc stop, SIGTERM, SIGKILL); with CHECK, raise
        AssertionError on a sanitizer report or an earlier crash."""
        problems = []
        if self.proc is not None:
            if self.proc.poll() is not None:
                problems.append("knotd had exited with %s before stop" % self.proc.returncode)
            else:
                self._knotc_raw("stop", timeout=5)
                try:
                    # Knot 3.4 runs control commands in helper threads; the
                    # main thread acts on a processed `stop` only when its
                    # accept() poll times out (a fixed 5 s). Knot 3.2 exits
                    # at once. (Waking it with an empty connection to the
                    # control socket hangs 3.4.6 for good: don't.)
                    self.proc.wait(timeout=12)
                except subprocess.TimeoutExpired:
                    self.proc.send_signal(signal.SIGTERM)
                    try:
                        self.proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(timeout=5)
                    problems.append("knotd did not stop on `knotc stop`")
            if self.proc.returncode not in (0, None) and not problems:
                problems.append("knotd exit status %s" % self.proc.returncode)
            self.proc = None
            try:
                self._err.close()
            except Exception:  # noqa: BLE001
                pass
        _RUNNING.discard(self)
        stderr = self._read(self.stderr_path) if self.dir else ""
        if not self.allow_module_errors:
            errs = [l for l in self.log_lines() if "module 'mod-mxfilter" in l and
                    re.search(r" (error|critical): ", l)]
            if errs:
                problems.append("module logged errors:\n" + "\n".join(errs[:10]))
        if SANITIZER_RE.search(stderr):
            problems.append("sanitizer report in knotd stderr:\n" + stderr[-6000:])
        if not keep_dir:
            if problems and self.dir:
                sys.stderr.write("knotd problems, log tail:\n%s\n" % self.log_text()[-3000:])
            self._rmdir()
        if check and problems:
            raise AssertionError("; ".join(problems))

    def _rmdir(self):
        if self.dir and not os.environ.get("MXFILTER_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        elif self.dir:
            sys.stderr.write("kept %s\n" % self.dir)

    @staticmethod
    def _read(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- control
    def _knotc_raw(self, *args, timeout=20):
        try:
            # The control socket, not -c: knotc would parse knot.conf itself
            # and fail on a file the server has not (re)loaded.
            return run([KNOTC, "-s", os.path.join(self.dir, "knot.sock"), "-t", "10"] + list(args),
                       timeout=timeout)
        except subprocess.TimeoutExpired:
            return 124, "", "knotc timed out"

    def knotc(self, *args, check=True, timeout=30):
        """Run knotc against this server; return its output (stdout+stderr)."""
        rc, out, err = self._knotc_raw(*args, timeout=timeout)
        if check and rc != 0:
            raise AssertionError("knotc %s failed (%d): %s%s" % (" ".join(args), rc, out, err))
        return out + err if not check else out

    def reload(self):
        """`knotc reload`, then wait until every zone answers again."""
        self.knotc("reload")
        self.wait_zones_loaded()

    def zone_reload(self, zone):
        self.knotc("-b", "zone-reload", zone)
        self.wait_zones_loaded(zones=[zone])

    def zone_stats(self, zone, module="mod-mxfilter"):
        """Counters of MODULE for ZONE (zeros included), e.g.
        {'enforced': 1, 'blocked[bypass]': 1, 'blocked[fallback]': 1, ...}.
        Empty dict if the module has no counters for the zone."""
        rc, out, err = self._knotc_raw("-f", "zone-stats", zone, module)
        stats = {}
        for line in out.splitlines():
            m = re.match(r"\[[^\]]*\]\s+%s\.(\S+)\s*=\s*(\d+)\s*$" % re.escape(module), line)
            if m:
                stats[m.group(1)] = int(m.group(2))
        return stats

    # -- logs
    def log_text(self):
        return self._read(self.log_path) if self.dir else ""

    def log_lines(self, since=0):
        return self.log_text().splitlines()[since:]

    def mark(self):
        """A position in the log; pass it as since= to see only newer lines."""
        return len(self.log_lines())

    def module_lines(self, since=0, pattern=None):
        """Log lines written by the module (`module 'mod-mxfilter...'`)."""
        out = [l for l in self.log_lines(since) if "module 'mod-mxfilter" in l]
        if pattern:
            out = [l for l in out if re.search(pattern, l)]
        return out

    def wait_log(self, pattern, since=0, timeout=5.0, count=1):
        """Wait until COUNT lines after SINCE match PATTERN; return them."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            lines = [l for l in self.log_lines(since) if rx.search(l)]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def settle_log(self, quiet=0.3, timeout=3.0):
        """Wait until the log stops growing for QUIET seconds."""
        deadline = time.monotonic() + timeout
        n = -1
        while time.monotonic() < deadline:
            m = len(self.log_text())
            if m == n:
                return
            n = m
            time.sleep(quiet)

    # -- clients
    def kdig(self, name, rtype="MX", tcp=False, edns=True, bufsize=None,
             do=False, cd=False, extra=(), timeout=5):
        """Query with kdig +json; return Result (for AXFR a list of Result)."""
        cmd = [KDIG, "@127.0.0.1", "-p", str(self.port), "+json", "+ignore",
               "+timeout=2", "+retry=1"]
        xfr = rtype.upper().startswith(("AXFR", "IXFR"))
        if tcp or xfr:
            cmd.append("+tcp")
        else:
            cmd.append("+notcp")
        if bufsize is not None:
            cmd.append("+bufsize=%d" % bufsize)
        elif edns:
            cmd.append("+edns")
        else:
            cmd.append("+noedns")
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

    def kdig_text(self, *args, timeout=10):
        """Plain kdig output (for the human-readable checks)."""
        rc, out, err = run([KDIG, "@127.0.0.1", "-p", str(self.port)] + list(args),
                           timeout=timeout)
        return rc, out + err

    def wire(self, name, rtype="MX", **kw):
        """Raw query keeping NAME's spelling; owners in the result keep the
        spelling the server wrote (0x20)."""
        return wire_query(self.port, name, rtype, **kw)

    def nslookup(self, name, rtype="mx", timeout=10):
        rc, out, err = run([NSLOOKUP, "-port=%d" % self.port, "-type=%s" % rtype,
                            name, "127.0.0.1"], timeout=timeout)
        return rc, out + err

    def ksks(self, zone):
        """ZONE's current KSKs: the rdata of its DNSKEY 257 records as kdig
        prints them. AssertionError if the zone publishes none."""
        r = self.kdig(zone, "DNSKEY", tcp=True)
        ksks = [a[3] for a in r.answer if a[2] == "DNSKEY" and a[3].startswith("257 ")]
        if not ksks:
            raise AssertionError("no KSK in the DNSKEY set of %s:\n%s" % (zone, r.text()))
        return ksks

    def trust_anchor(self, zone):
        """Write ZONE's current KSKs (its DNSKEY 257 records) as a delv
        `trust-anchors { ZONE. static-key ...; };` file in this server's
        directory (removed with it); return the path, for `delv -a PATH`.
        AssertionError if the zone publishes no KSK."""
        ksks = self.ksks(zone)
        # A new file each time: a test may take the anchor again after a rollover.
        path = os.path.join(self.dir, "%s.%d.anchor" % (zone, time.monotonic_ns()))
        with open(path, "w") as f:
            f.write("trust-anchors {\n")
            for k in ksks:
                flags, proto, alg, key = k.split(None, 3)
                f.write('  %s. static-key %s %s %s "%s";\n' %
                        (zone, flags, proto, alg, key.replace(" ", "")))
            f.write("};\n")
        return path


class WithReference(unittest.TestCase):
    """A knotd with the module (cls.k) and a reference knotd without it
    (cls.ref) serving the same zones, zones(with_module), with the same
    `server:` items (SERVER); MOD_MXFILTER is the module's section."""

    SERVER = {}
    MOD_MXFILTER = None
    LOG_LEVEL = "debug"

    @classmethod
    def zones(cls, with_module):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.k = Knotd(cls.zones(True), mod_mxfilter=cls.MOD_MXFILTER,
                      server=cls.SERVER, log_level=cls.LOG_LEVEL)
        cls.k.start()
        try:
            cls.ref = Knotd(cls.zones(False), load_module=False, name="reference",
                            server=cls.SERVER, log_level=cls.LOG_LEVEL)
            cls.ref.start()
        except Exception:
            cls.k.stop(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.k.stop()
        finally:
            cls.ref.stop()


def mx_set(pairs):
    return sorted((int(p), n.lower().rstrip(".") + ".") for p, n in pairs)


def summary(test_case_name, lines):
    sys.stdout.write("== %s ==\n%s\n" % (test_case_name, "\n".join("  " + l for l in lines)))
    sys.stdout.flush()


def main():
    """unittest.main with verbose output and a clear summary."""
    prog = unittest.main(verbosity=2, exit=False)
    r = prog.result
    sys.stdout.write("\nSUMMARY %s: %d run, %d failures, %d errors, %d skipped\n" % (
        os.path.basename(sys.argv[0]), r.testsRun, len(r.failures),
        len(r.errors), len(r.skipped)))
    for t, why in r.skipped:
        sys.stdout.write("  skipped %s: %s\n" % (t.id(), why))
    for t, _ in r.failures + r.errors:
        sys.stdout.write("  FAILED %s\n" % t.id())
    if r.skipped and len(r.skipped) >= r.testsRun and not (r.failures or r.errors):
        sys.exit(77)  # meson: skipped
    sys.exit(0 if r.wasSuccessful() else 1)
