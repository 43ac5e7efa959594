# SPDX-License-Identifier: GPL-3.0-or-later
"""The server: a knotd on 127.0.0.1 with its own temporary directory,
configured from a Config, controlled with knotc, its log read and waited
on; a pair of servers with and without the module; `knotc conf-check` and
a knotd start that is expected to fail."""

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from . import clients
from .clients import Clients
from .common import (KNOTC, KNOTD, SANITIZER_RE, _pdeathsig, check_sanitizer, free_port,
                     knot_argv, read_file, remove_dir, require_module, run, sanitizer_env,
                     spawn, stopped)
from .zones import delv_anchors, ksk_rdata


# ----------------------------------------------------------------------------
# Configuration

class Raw(str):
    """A configuration value written verbatim (no quoting)."""


def yval(v):
    """V as a knot.conf value."""
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
    """A knot.conf section from ITEMS, a list of dicts (each an entry of
    the section's list), or ITEMS itself when it is a str."""
    if isinstance(items, str):
        return items.rstrip("\n") + "\n"
    out = [name + ":"]
    for it in items:
        first = True
        for k, v in it.items():
            out.append(("  - " if first else "    ") + "%s: %s" % (k, yval(v)))
            first = False
    return "\n".join(out) + "\n"


class Config:
    """What a test server's knot.conf says, as data. Knotd renders it with
    its own rundir, storage, listen address and port, a log file target and
    a transfer ACL for 127.0.0.0/8, in the order Knot requires.

    zones      list of Zone (the `zone:` section; their files are written)
    policies   the `mod-mxfilter:` section: a list of dicts, or raw text
    templates  more `template:` entries (dicts) besides the harness's
               `default`; each gets the harness's storage unless it says
    server     more `server:` items, e.g. {"udp-workers": 4}
    log_level  level of the log file target (default debug)
    sections   raw knot.conf text after the module sections (`policy:`,
               `keystore:`, another module's section, ...)
    modules    more `module:` entries, (id, file) pairs
    files      {domain: text}: zone files of zones that are not in ZONES
               (members of a catalog zone)
    module     the mxfilter build that `module: - id: mod-mxfilter` loads:
               True = $MXFILTER_SO (the test skips without it), a path
               (e.g. faulty_module()), or False = no mod-mxfilter at all

    A test changes it and calls Knotd.reload() to apply the change.
    """

    def __init__(self, zones=(), policies=None, templates=(), server=None,
                 log_level="debug", sections="", modules=(), files=None, module=True):
        self.zones = list(zones)
        self.policies = policies
        self.templates = list(templates)
        self.server = dict(server or {})
        self.log_level = log_level
        self.sections = sections
        self.modules = list(modules)
        self.files = dict(files or {})
        self.module = module

    def without_module(self):
        """A copy that serves the same data without mod-mxfilter: for a
        reference server."""
        c = copy.copy(self)
        c.zones = [z.without_module() for z in self.zones]
        c.policies = None
        c.templates = [{k: v for k, v in t.items() if k != "module"} for t in self.templates]
        c.server = dict(self.server)
        c.modules = list(self.modules)
        c.files = dict(self.files)
        c.module = False
        return c


# ----------------------------------------------------------------------------
# The server

class Knotd(Clients):
    """A knotd on 127.0.0.1 with its own temporary directory (self.dir):
    knot.conf, the zone files, storage, the control socket, its log.

    config               a Config, or a list of Zone for Config(zones)
    name                 what messages call this server ("reference", ...)
    env                  more environment for knotd, e.g. {"MXFILTER_FAULT":
                         "enomem"} for the fault-injection build
    port                 listen there (default: a free port, another one if
                         knotd cannot bind it)
    allow_module_errors  the test expects module lines at level error
                         (otherwise stop() fails the test on one)
    wrapper              argv run in front of knotd, e.g. valgrind's
    before_start         f(server): called once knot.conf is written and
                         knotd not yet running (e.g. keymgr on its KASP
                         database)

    start()/stop() or `with Knotd(...) as k:`. stop() fails the test
    (AssertionError) on a sanitizer report, an earlier exit, an exit status
    other than 0, a knotd that does not stop on `knotc stop`, or a module
    error line nobody allowed. Every client of Clients queries it
    (kdig, wire, dig, nslookup, ...).

    Subclasses may override render_conf(), wait_zones_loaded(), prepare(),
    command(), knotc_argv(), log_path, START_TIMEOUT and STOP_TIMEOUT.
    """

    START_TIMEOUT = 20.0
    STOP_TIMEOUT = 12.0

    def __init__(self, config=None, *, name="knotd", env=None, port=None,
                 allow_module_errors=False, wrapper=(), before_start=None):
        if config is None:
            config = Config()
        elif not isinstance(config, Config):
            config = Config(config)
        self.config = config
        self.name = name
        self.env = dict(env or {})
        self.fixed_port = port
        self.allow_module_errors = allow_module_errors
        self.wrapper = list(wrapper)
        self.before_start = before_start
        self.module_file = None  # The mxfilter .so in module:, once started.
        self.dir = None
        self.port = port
        self._proc = None
        self._status = None

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
        """knot.conf's text from self.config."""
        cfg = self.config
        c = []
        c.append("server:\n  rundir: %s\n  listen: 127.0.0.1@%d\n"
                 "  background-workers: 2\n" % (self.dir, self.port) +
                 "".join("  %s: %s\n" % (k, yval(v)) for k, v in cfg.server.items()))
        c.append("database:\n  storage: %s\n" % os.path.join(self.dir, "storage"))
        c.append("log:\n  - target: %s\n    any: %s\n" % (self.log_path, cfg.log_level))
        mods = ([("mod-mxfilter", self.module_file)] if self.module_file else []) + \
            list(cfg.modules)
        if mods:
            c.append("module:\n" + "".join("  - id: %s\n    file: %s\n" % m for m in mods))
        if cfg.policies:
            c.append(render_section("mod-mxfilter", cfg.policies))
        if cfg.sections:
            c.append(cfg.sections.rstrip("\n") + "\n")
        c.append("acl:\n  - id: e2e-xfr\n    address: 127.0.0.0/8\n"
                 "    action: transfer\n")
        base = {"storage": os.path.join(self.dir, "zones"), "file": "%s.zone",
                "zonefile-sync": -1, "journal-content": "none"}
        tpl = [dict({"id": "default"}, **base)]
        for t in cfg.templates:
            # A zone uses one template only: give each the harness's storage.
            d = dict(t)
            for key, v in base.items():
                d.setdefault(key, v)
            tpl.append(d)
        c.append(render_section("template", tpl))
        if cfg.zones:
            zl = []
            for z in cfg.zones:
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
        """Write knot.conf from self.config (reload() does it too)."""
        with open(self.conf_path, "w") as f:
            f.write(self.render_conf())

    def write_zone(self, domain, text, bump_mtime=True):
        """Write DOMAIN's zone file (then zone_reload(DOMAIN))."""
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

    def prepare(self):
        """Make the temporary directory and write the zone files."""
        self.dir = tempfile.mkdtemp(prefix="mxf-e2e-")
        os.makedirs(os.path.join(self.dir, "storage"))
        os.makedirs(os.path.join(self.dir, "zones"))
        for z in self.config.zones:
            with open(self.zone_path(z.domain), "w") as f:
                f.write(z.text)
        for domain, text in self.config.files.items():
            with open(self.zone_path(domain), "w") as f:
                f.write(text)

    def command(self):
        """knotd's argv."""
        return knot_argv(self.wrapper + [KNOTD, "-c", self.conf_path])

    def start(self):
        """Start knotd and wait until it answers and every zone of the
        configuration is served; RuntimeError (with the configuration and
        the log) if it does not."""
        module = self.config.module
        self.module_file = require_module() if module is True else (module or None)
        self.prepare()
        env = sanitizer_env(dict(os.environ, **self.env))
        last_err = ""
        for attempt in range(3):
            self.port = self.fixed_port or free_port()
            self.write_conf()
            if attempt == 0 and self.before_start is not None:
                self.before_start(self)
            self._status = None
            self._proc = spawn(self, self.command(), self.stderr_path, env)
            try:
                self.wait_ready()
                return self
            except Exception as e:  # noqa: BLE001
                last_err = str(e)
                self.stop(check=False, keep_dir=True)
                if self.fixed_port or not re.search(
                        r"(?i)cannot bind|failed to bind|address already in use",
                        self.log_text() + self.stderr_text()):
                    break
        msg = "%s did not start: %s\n--- conf ---\n%s\n--- log ---\n%s\n--- stderr ---\n%s" % (
            self.name, last_err, read_file(self.conf_path), self.log_text()[-4000:],
            self.stderr_text()[-4000:])
        self.remove_dir()
        raise RuntimeError(msg)

    def wait_ready(self):
        """Wait until knotc answers, then until the zones are served."""
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            self._check_running()
            rc, out, _ = self._knotc(["status"], timeout=5)
            if rc == 0:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("knotc status did not answer")
        self.wait_zones_loaded(deadline - time.monotonic())

    def wait_zones_loaded(self, timeout=15.0, zones=None):
        """Wait until every zone of ZONES (default: the configuration's)
        is loaded and answers SOA authoritatively (a catalog zone: loaded);
        RuntimeError after TIMEOUT seconds."""
        names = zones or [z.domain for z in self.config.zones]
        catalogs = {z.domain for z in self.config.zones
                    if str(z.extra.get("catalog-role", "")) == "interpret"}
        deadline = time.monotonic() + max(timeout, 1.0)
        pending = set(names)
        while pending and time.monotonic() < deadline:
            self._check_running()
            for zn in list(pending):
                if self.zone_serial(zn) is None:
                    continue
                if zn in catalogs:  # Catalog zones are not served.
                    pending.discard(zn)
                    continue
                try:
                    r = clients.wire_query(self.port, zn, "SOA", timeout=1)
                    if r.rcode == "NOERROR" and r.aa:
                        pending.discard(zn)
                except (OSError, ValueError):
                    pass
            if pending:
                time.sleep(0.05)
        if pending:
            raise RuntimeError("zones not loaded: %s" % sorted(pending))

    def _check_running(self):
        if not self.alive():
            raise RuntimeError("knotd exited with %s" % self.exit_status)

    def alive(self):
        """Whether knotd is running."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self):
        """knotd's process id (of the wrapper's process when there is one)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def exit_status(self):
        """knotd's exit status once it has exited (negative: the signal),
        else None."""
        if self._proc is not None:
            return self._proc.poll()
        return self._status

    def stop(self, check=True, keep_dir=False, timeout=None):
        """Stop knotd: `knotc stop`, TIMEOUT (default STOP_TIMEOUT) seconds
        for it to exit, then SIGTERM, then SIGKILL; remove the directory
        unless KEEP_DIR. With CHECK, AssertionError on any problem (see the
        class). Returns the exit status."""
        problems = []
        if self._proc is not None:
            if self._proc.poll() is not None:
                problems.append("knotd had exited with %s before stop" % self._proc.returncode)
            else:
                self._knotc(["stop"], timeout=5)
                try:
                    # Knot 3.4 runs control commands in helper threads; the
                    # main thread acts on a processed `stop` only when its
                    # accept() poll times out (a fixed 5 s). Knot 3.2 exits
                    # at once. (Waking it with an empty connection to the
                    # control socket hangs 3.4.6 for good: don't.)
                    self._proc.wait(timeout=timeout or self.STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self._proc.send_signal(signal.SIGTERM)
                    try:
                        self._proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        self._proc.kill()
                        self._proc.wait(timeout=5)
                    problems.append("knotd did not stop on `knotc stop`")
            self._status = self._proc.returncode
            if self._status not in (0, None) and not problems:
                problems.append("knotd exit status %s" % self._status)
            self._proc = None
        stopped(self)
        stderr = self.stderr_text()
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
            self.remove_dir()
        if check and problems:
            raise AssertionError("%s: %s" % (self.name, "; ".join(problems)))
        return self._status

    def remove_dir(self):
        """Remove the temporary directory (kept with $MXFILTER_KEEP)."""
        remove_dir(self.dir)
        self.dir = None

    # -- control
    def knotc_argv(self):
        # The control socket, not -c: knotc would parse knot.conf itself
        # and fail on a file the server has not (re)loaded.
        return [KNOTC, "-s", os.path.join(self.dir, "knot.sock"), "-t", "10"]

    def _knotc(self, args, timeout=20):
        try:
            return run(self.knotc_argv() + list(args), timeout=timeout)
        except subprocess.TimeoutExpired:
            return 124, "", "knotc timed out"

    def knotc(self, *args, check=True, timeout=30):
        """Run knotc against this server. CHECK: AssertionError if it
        fails, else its stdout; without CHECK: its stdout and stderr."""
        rc, out, err = self._knotc(args, timeout=timeout)
        if check and rc != 0:
            raise AssertionError("knotc %s failed (%d): %s%s" % (" ".join(args), rc, out, err))
        return out if check else out + err

    def reload(self, check=True):
        """Write knot.conf from self.config, `knotc reload`, wait until
        every zone answers again; return knotc's output. Without CHECK a
        refused configuration is no error (the output says why)."""
        self.write_conf()
        out = self.knotc("reload", check=check)
        self.wait_zones_loaded()
        return out

    def zone_reload(self, zone):
        """`knotc -b zone-reload ZONE`, then wait until it answers."""
        self.knotc("-b", "zone-reload", zone)
        self.wait_zones_loaded(zones=[zone])

    def zone_serial(self, zone):
        """ZONE's serial as `knotc zone-status` shows it, None if the zone
        is not loaded."""
        rc, out, _ = self._knotc(["zone-status", zone], timeout=5)
        m = re.search(r"serial: (\d+)", out) if rc == 0 else None
        return int(m.group(1)) if m else None

    def zone_read(self, zone, owner=None, rtype=None):
        """ZONE's records as the server holds them (signatures included),
        by `knotc zone-read`: (owner, ttl, type, rdata) tuples."""
        args = ["zone-read", zone] + ([owner.rstrip(".") + "."] if owner else []) + \
            ([rtype] if rtype else [])
        rc, out, err = self._knotc(args)
        return [(m.group(1), int(m.group(2)), m.group(3), m.group(4)) for m in
                re.finditer(r"^\[[^\]]*\]\s+(\S+)\s+(\d+)\s+(\S+)\s+(.*?)\s*$", out, re.M)]

    def zone_stats(self, zone, module="mod-mxfilter"):
        """Counters of MODULE for ZONE (zeros included), e.g.
        {'enforced': 1, 'blocked[bypass]': 1, 'blocked[fallback]': 1, ...}.
        Empty dict if the module has no counters for the zone."""
        rc, out, err = self._knotc(["-f", "zone-stats", zone, module])
        stats = {}
        for line in out.splitlines():
            m = re.match(r"\[[^\]]*\]\s+%s\.(\S+)\s*=\s*(\d+)\s*$" % re.escape(module), line)
            if m:
                stats[m.group(1)] = int(m.group(2))
        return stats

    def stats_delta(self, zone, fn):
        """Run FN(); return how each counter of ZONE changed meanwhile."""
        before = self.zone_stats(zone)
        fn()
        after = self.zone_stats(zone)
        return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}

    # -- logs
    def log_text(self):
        return read_file(self.log_path) if self.dir else ""

    def stderr_text(self):
        """What knotd wrote to stdout/stderr (sanitizer reports, asserts)."""
        return read_file(self.stderr_path) if self.dir else ""

    def log_lines(self, since=0):
        return self.log_text().splitlines()[since:]

    def mark(self):
        """A position in the log; pass it as since= to see only newer lines."""
        return len(self.log_lines())

    def module_lines(self, since=0, pattern=None):
        """Log lines written by the module (`module 'mod-mxfilter...'`),
        those matching PATTERN when given."""
        out = [l for l in self.log_lines(since) if "module 'mod-mxfilter" in l]
        if pattern:
            out = [l for l in out if re.search(pattern, l)]
        return out

    def wait_log(self, pattern, since=0, timeout=5.0, count=1):
        """Wait until COUNT lines after SINCE match PATTERN; return the
        matching lines (fewer after TIMEOUT seconds)."""
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

    # -- keys
    def ksks(self, zone):
        """ZONE's current KSKs: the rdata of its DNSKEY 257 records as kdig
        prints them. AssertionError if the zone publishes none."""
        r = self.kdig(zone, "DNSKEY", tcp=True)
        ksks = ksk_rdata(r.answer)
        if not ksks:
            raise AssertionError("no KSK in the DNSKEY set of %s:\n%s" % (zone, r.text()))
        return ksks

    def trust_anchor(self, zone):
        """Write ZONE's current KSKs as a delv `trust-anchors` file in this
        server's directory (removed with it); return its path.
        AssertionError if the zone publishes no KSK."""
        ksks = self.ksks(zone)
        # A new file each time: a test may take the anchor again after a rollover.
        path = os.path.join(self.dir, "%s.%d.anchor" % (zone, time.monotonic_ns()))
        with open(path, "w") as f:
            f.write(delv_anchors(zone, ksks))
        return path

    def delv(self, zone, name, rtype="MX", anchor=None):
        """delv against this server with ZONE as the root of trust (ANCHOR,
        default: the zone's current KSKs); returns clients.Delv."""
        return clients.delv(self.port, zone, name, rtype, anchor or self.trust_anchor(zone))


class WithReference(unittest.TestCase):
    """Two servers for a test class: cls.k with the module and cls.ref
    without it (Config.without_module()), serving the same zones, zones(),
    with the same `server:` items, SERVER; POLICIES is the `mod-mxfilter:`
    section, LOG_LEVEL the log level."""

    SERVER = {}
    POLICIES = None
    LOG_LEVEL = "debug"

    @classmethod
    def zones(cls):
        """The zones, enrolled as the server with the module serves them."""
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cfg = Config(cls.zones(), policies=cls.POLICIES, server=cls.SERVER,
                     log_level=cls.LOG_LEVEL)
        cls.k = Knotd(cfg).start()
        try:
            cls.ref = Knotd(cfg.without_module(), name="reference").start()
        except Exception:
            cls.k.stop(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.k.stop()
        finally:
            cls.ref.stop()


# ----------------------------------------------------------------------------
# Configurations that are not meant to serve

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
    """Start knotd on CONF_TEXT, its placeholders filled: @RUNDIR@ (a
    temporary directory), @PORT@ (a free port), @SO@ ($MXFILTER_SO).
    Return (rc, output) if it exits within TIMEOUT seconds, else stop it
    and return (None, output)."""
    d = tempfile.mkdtemp(prefix="mxf-ks-")
    try:
        path = os.path.join(d, "knot.conf")
        text = conf_text.replace("@RUNDIR@", d).replace("@PORT@", str(free_port()))
        if "@SO@" in text:
            text = text.replace("@SO@", require_module())
        with open(path, "w") as f:
            f.write(text)
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
