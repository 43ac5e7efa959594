#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The operations docs against real log sinks: rsyslog, journald, a file.

Run by tests/debian/logging-test inside a Debian root, as root, in a private
mount namespace (the script mounts its own /dev, /run and cgroup tree there,
so nothing reaches the host's):

  logging.py MXFILTER_SO

- rsyslogd (Debian's /etc/rsyslog.conf, in the foreground) owns a private
  /dev/log; knotd logs with `target: syslog` (syslog(3), as on a system
  without systemd) and to a file target at once.
- systemd-journald runs on a private /run; /run/systemd/system exists, so
  knotd's sd_booted() is true and it sends structured entries (ZONE=...)
  as under systemd; knotd runs in the cgroup system.slice/knot.service of a
  private name=systemd hierarchy, so the journal records _SYSTEMD_UNIT
  knot.service and `journalctl -u knot` finds the lines.
- Every summary block of docs/log-format.md ("Summarising a day") runs as
  written, with its first command replaced by each source the doc names
  (journal, rsyslog file, file target), and must list the zones.
- journald's rate limit: a burst of distinct legacy records with a small
  RateLimitBurst; the journal's own "Suppressed N messages" line.
- The file target: the directory made as the guide says; a missing one
  gives `failed to open log`; logrotate with copytruncate keeps knotd
  writing to the file, and the counters.
- The statistics: dump carries the module's counters.
Prints the real lines and outputs it checked (for the docs).
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))

import knotharness as kh  # noqa: E402

# Legacy records, and a partial filtering set (`missing MX` lines: every
# summary of log-format.md has lines to list).
LEGACY = "@ MX 5 mailgate\n@ MX 40 smtp.isp.net.\nmailgate A 192.0.2.25\n" \
         "shop MX 10 mail.shop\nmail.shop A 192.0.2.26\n" \
         "partial MX 10 france.security-mail.net.\n"
BURST = 600  # distinct legacy owners in burst.test


def log(msg):
    print("== " + msg, flush=True)


def sh(*cmd, check=True, timeout=60, **kw):
    p = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stdout))
    return p.stdout


def expect(cond, what, detail=""):
    if not cond:
        raise AssertionError(what + ("\n" + detail if detail else ""))
    print("   ok: " + what, flush=True)


def show(title, text, limit=12):
    lines = text.rstrip("\n").splitlines()
    print("   --- %s (%d lines)" % (title, len(lines)))
    for l in lines[:limit]:
        print("   | " + l)
    if len(lines) > limit:
        print("   | ...")


def wait_for(pred, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def private_dev_run():
    """A private /dev (tmpfs with the few device nodes bound in) and /run."""
    host = tempfile.mkdtemp(prefix="mxf-hostdev-")
    sh("mount", "--bind", "/dev", host)
    sh("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/dev")
    for n in ("null", "zero", "full", "random", "urandom", "tty"):
        open("/dev/" + n, "w").close()
        sh("mount", "--bind", os.path.join(host, n), "/dev/" + n)
    os.mkdir("/dev/pts")
    sh("mount", "--bind", os.path.join(host, "pts"), "/dev/pts")
    os.symlink("pts/ptmx", "/dev/ptmx")
    os.mkdir("/dev/shm")
    sh("mount", "-t", "tmpfs", "tmpfs", "/dev/shm")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, "/dev/" + name)
    sh("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run")
    os.makedirs("/run/lock")


class Server(kh.Knotd):
    """The harness's knotd serving zones() with POLICIES, with a `log:`
    section of our choosing (LOG_CONF, {dir}: the server's directory) and
    a statistics dump; WRAPPER: argv run in front of knotd."""

    def __init__(self, log_conf, wrapper=()):
        super().__init__(kh.Config(zones(), policies=POLICIES, log_level="info"),
                         wrapper=wrapper)
        self.log_conf = log_conf

    def render_conf(self):
        conf = super().render_conf()
        conf = re.sub(r"(?m)^log:\n(?:  .*\n)+",
                      "log:\n" + self.log_conf.format(dir=self.dir), conf)
        return conf + "statistics:\n  timer: 1\n  file: %s/stats.yaml\n" % self.dir


def zones():
    burst = "".join("o%d MX 5 legacy%d.example.\n" % (i, i) for i in range(BURST))
    return [
        kh.Zone("your-domain.com", LEGACY, module="mod-mxfilter/securemail"),
        kh.Zone("example-shop.net", LEGACY, module="mod-mxfilter/securemail-audit"),
        kh.Zone("burst.test", burst, module="mod-mxfilter/securemail"),
    ]


POLICIES = [{"id": "securemail"}, {"id": "securemail-audit", "mode": "audit"}]


def traffic(k, burst=False):
    for z in ("your-domain.com", "example-shop.net"):
        for _ in range(3):
            for name in (z, "shop." + z, "partial." + z):
                k.wire(name, "MX")
    if burst:
        for i in range(BURST):
            k.wire("o%d.burst.test" % i, "MX")


def summary_blocks():
    """The sh blocks of log-format.md's "Summarising a day" section."""
    with open(os.path.join(SRC, "docs", "log-format.md")) as f:
        doc = f.read()
    sec = doc[doc.index("\n## Summarising a day"):]
    return re.findall(r"```sh\n(.*?)```", sec, re.S)


def run_summaries(source_name, first_cmd):
    """Each summary block with its first command (a journalctl line) replaced
    by FIRST_CMD; returns the outputs."""
    outs = []
    for block in summary_blocks():
        if not block.startswith("journalctl "):
            continue
        head, rest = block.split("\n", 1) if "\n" in block else (block, "")
        m = re.match(r"journalctl [^|]*?-o (cat|json)( \|)?(.*)$", head)
        if not m:
            continue
        fmt = m.group(1)
        if fmt == "json" and source_name != "journal":
            continue
        cmd = first_cmd(fmt) + (" |" + m.group(3) if m.group(2) else "") + "\n" + rest
        out = sh("sh", "-c", cmd, check=False)  # grep finding nothing exits 1
        outs.append((block, out))
    return outs


def check_summaries(source_name, first_cmd):
    outs = run_summaries(source_name, first_cmd)
    expect(len(outs) >= 3, "%s: %d summary commands of log-format.md ran" %
           (source_name, len(outs)), str(outs))
    for block, out in outs:
        show("%s: %s" % (source_name, block.splitlines()[1][:50]), out, limit=8)
        # (the failure summary prints nothing here: no failures)
        expect("your-domain.com." in out or "127.0.0.1" in out or
               ("failed to enforce" in block and out == ""),
               "%s: '%s' lists what the lines hold" % (source_name, block[:40]), out)
        expect(not re.search(r"(?m)^\s*\d+\]", out) and "knotd[" not in out,
               "%s: no PID taken for a zone" % source_name, out)


def phase_rsyslog(so):
    log("rsyslog: Debian's /etc/rsyslog.conf, rsyslogd -n on a private /dev/log")
    for f in ("/var/log/syslog", "/var/log/messages"):
        if os.path.exists(f):
            os.remove(f)
    rs = subprocess.Popen(["rsyslogd", "-n", "-iNONE"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    try:
        wait_for(lambda: os.path.exists("/dev/log"), what="/dev/log from rsyslogd")
        k = Server("  - target: syslog\n    any: info\n"
                   "  - target: {dir}/knot.log\n    any: info\n")
        k.start()
        traffic(k)
        k.kdig("your-domain.com", "AXFR")
        file_lines = wait_for(lambda: len(k.module_lines()) >= 6 and k.module_lines(),
                              what="module lines in the file target")
        k.settle_log()
        syslog = wait_for(lambda: [l for l in read("/var/log/syslog").splitlines()
                                   if "mod-mxfilter" in l]
                          if os.path.exists("/var/log/syslog") else None,
                          what="module lines in /var/log/syslog")
        show("/var/log/syslog (module lines)", "\n".join(syslog), limit=6)
        show("file target", "\n".join(file_lines), limit=3)
        day = syslog[0][:6]
        if re.match(r"^[A-Z][a-z]{2} [ 0-9]\d ", day):  # traditional format
            check_summaries("rsyslog", lambda fmt: "grep -h '^%s' /var/log/syslog" % day)
        else:
            check_summaries("rsyslog", lambda fmt: "grep -h '^%sT' /var/log/syslog" %
                            syslog[0][:10])
        file_day = file_lines[0][:10]
        check_summaries("file", lambda fmt: "grep -h '^%sT' %s" % (file_day, k.log_path))
        phase_file_target(k)
        k.stop()
        # A file target in a directory user knot cannot write.
        missing_dir(so)
        wait_for(lambda: "failed to open log" in read("/var/log/syslog"),
                 what="failed to open log in syslog")
        show("missing log directory", "\n".join(l for l in read("/var/log/syslog").splitlines()
                                                  if "failed to open log" in l))
    finally:
        rs.terminate()
        rs.wait(timeout=10)
        if os.path.exists("/dev/log"):
            os.remove("/dev/log")


def missing_dir(so):
    run = tempfile.mkdtemp(prefix="mxf-knot-")
    shutil.chown(run, "knot", "knot")
    port = kh.free_port()
    conf = os.path.join(run, "knot.conf")
    with open(conf, "w") as f:
        f.write("server:\n  rundir: %s\n  listen: 127.0.0.1@%d\n"
                "log:\n  - target: syslog\n    any: info\n"
                "  - target: /var/log/knot-missing/knot.log\n    any: info\n" % (run, port))
    out = sh("runuser", "-u", "knot", "--", "knotc", "-c", conf, "conf-check")
    expect("Configuration is valid" in out, "conf-check accepts a file target in a missing dir")
    p = subprocess.Popen(["runuser", "-u", "knot", "--", "knotd", "-c", conf],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: "failed to open log" in read("/var/log/syslog"), what="log error")
    finally:
        sh("knotc", "-s", os.path.join(run, "knot.sock"), "stop", check=False)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
        shutil.rmtree(run, ignore_errors=True)


def phase_file_target(k):
    log("file target: logrotate copytruncate, counters, statistics dump")
    before = k.zone_stats("your-domain.com")
    rot = os.path.join(k.dir, "logrotate.conf")
    with open(os.path.join(SRC, "docs", "operator-guide.md")) as f:
        guide = f.read()
    m = re.search(r"```\n(/var/log/knot/knot\.log \{\n.*?\n\})\n```", guide, re.S)
    expect(m is not None, "operator-guide.md has a logrotate stanza")
    with open(rot, "w") as f:
        f.write(m.group(1).replace("/var/log/knot/knot.log", k.log_path))
    size = os.path.getsize(k.log_path)
    sh("logrotate", "-f", "-s", os.path.join(k.dir, "logrotate.state"), rot)
    expect(os.path.getsize(k.log_path) < size, "rotated: the file target was emptied")
    mark = k.mark()
    k.wire("your-domain.com", "MX")
    k.kdig("your-domain.com", "AXFR")
    lines = wait_for(lambda: k.log_lines(), what="new lines in the truncated file")
    with open(k.log_path, "rb") as f:
        raw = f.read()
    expect(b"\0" not in raw and lines[0][:4].isdigit(),
           "after copytruncate knotd writes at the start of the emptied file", repr(raw[:80]))
    after = k.zone_stats("your-domain.com")
    expect(after.get("enforced", 0) > before.get("enforced", 0),
           "the counters go on (no HUP): enforced %s -> %s" % (before.get("enforced"),
                                                                after.get("enforced")))
    rotated = glob.glob(k.log_path + ".1*")
    expect(rotated, "the old lines are in %s" % (rotated[:1],))
    # statistics: dump
    stats = os.path.join(k.dir, "stats.yaml")
    text = wait_for(lambda: "mod-mxfilter" in read(stats) and read(stats), what="stats dump")
    show("statistics dump", text, limit=40)
    with open(os.path.join(SRC, "docs", "operator-guide.md")) as f:
        m = re.search(r"```sh\n(awk [^`]*?stats\.yaml[^`]*)```", f.read())
    expect(m is not None, "operator-guide.md has the failed-counter check")
    check = m.group(1).replace("/var/lib/knot/stats.yaml", stats)
    out = sh("sh", "-c", check, check=False)
    expect(out.strip() == "", "the check is silent while failed is 0 everywhere", out)
    bad = os.path.join(k.dir, "stats-bad.yaml")
    # Knot 3.2 prints zero counters ("failed: 0"), 3.4 and later leave them
    # out: set the zone's failed counter to 3 either way.
    zone_block = r"(your-domain\.com\.\":\s*\n\s+mod-mxfilter:\s*\n)"
    if re.search(zone_block + r"(?:   .*\n)*?   failed: 0", text):
        bad_text = re.sub(r"(your-domain\.com\.\":\s*\n(?:.*\n)*?\s+failed: )0", r"\g<1>3",
                          text, count=1)
    else:
        bad_text = re.sub(zone_block, r"\g<1>   failed: 3\n", text, count=1)
    with open(bad, "w") as f:
        f.write(bad_text)
    out = sh("sh", "-c", check.replace(stats, bad), check=False)
    show("the check on a dump with failed: 3", out)
    expect(out.strip() == "your-domain.com. failed 3", "the check names the zone", out)
    return mark


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def phase_journald(so):
    log("journald: systemd-journald on a private /run, knotd in knot.service's cgroup")
    os.makedirs("/run/systemd/system", exist_ok=True)  # sd_booted()
    os.makedirs("/etc/systemd/journald.conf.d", exist_ok=True)
    with open("/etc/systemd/journald.conf.d/mxf-test.conf", "w") as f:
        f.write("[Journal]\nStorage=volatile\nRateLimitIntervalSec=2s\nRateLimitBurst=100\n")
    # A private name=systemd hierarchy with the unit's cgroup.
    sh("mount", "-t", "tmpfs", "tmpfs", "/sys/fs/cgroup")
    os.makedirs("/sys/fs/cgroup/systemd")
    sh("mount", "-t", "cgroup", "-o", "none,name=systemd", "mxf-systemd", "/sys/fs/cgroup/systemd")
    unit = "/sys/fs/cgroup/systemd/system.slice/knot.service"
    os.makedirs(unit, exist_ok=True)
    jd = [p for p in ("/usr/lib/systemd/systemd-journald", "/lib/systemd/systemd-journald")
          if os.path.exists(p)][0]
    j = subprocess.Popen([jd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    wrapper = os.path.join(tempfile.mkdtemp(prefix="mxf-unit-"), "knotd")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\necho $$ > %s/cgroup.procs\nexec \"$@\"\n" % unit)
    os.chmod(wrapper, 0o755)
    try:
        wait_for(lambda: os.path.exists("/run/systemd/journal/socket"), what="journald socket")
        if not os.path.lexists("/dev/log"):
            os.symlink("/run/systemd/journal/dev-log", "/dev/log")
        k = Server("  - target: syslog\n    any: info\n"
                   "  - target: {dir}/knot.log\n    any: info\n", wrapper=[wrapper])
        k.start()
        traffic(k)
        k.settle_log()
        n_file = len(k.module_lines())
        out = wait_for(lambda: (lambda o: o.count("mod-mxfilter") >= n_file and o)(
            sh("journalctl", "-u", "knot", "-o", "cat", "--no-pager")),
            what="the module's lines under -u knot")
        show("journalctl -u knot -o cat", "\n".join(l for l in out.splitlines()
                                                    if "mod-mxfilter" in l), limit=4)
        js = sh("journalctl", "-u", "knot", "-o", "json", "--no-pager")
        entry = next(json.loads(l) for l in js.splitlines() if "legacy MX blocked" in l)
        keep = {k2: entry[k2] for k2 in ("MESSAGE", "PRIORITY", "ZONE", "SYSLOG_IDENTIFIER",
                                         "_SYSTEMD_UNIT", "_COMM") if k2 in entry}
        show("journalctl -u knot -o json (one entry, some fields)", json.dumps(keep, indent=1))
        expect(entry.get("_SYSTEMD_UNIT") == "knot.service" and entry.get("ZONE"),
               "the journal has _SYSTEMD_UNIT=knot.service and ZONE")
        check_summaries("journal", lambda fmt: "journalctl -u knot -o %s --no-pager" % fmt)
        # Rate limit: a burst of distinct records.
        t0 = time.time()
        mark = k.mark()
        traffic(k, burst=True)
        k.settle_log()
        sent = len([l for l in k.log_lines(mark) if "burst.test" in l])
        since = "@%d" % int(t0)
        got = wait_for(lambda: sh("journalctl", "-u", "knot", "-o", "cat", "--no-pager",
                                  "--since", since).count("[burst.test.]"), what="burst")
        # journald reports the drops with the first message after the window.
        time.sleep(2.5)
        k.knotc("zone-reload", "your-domain.com")
        wait_for(lambda: re.search(r"Suppressed \d+ messages from", sh(
            "journalctl", "-o", "cat", "--no-pager", "--since", since)), what="Suppressed line")
        got = sh("journalctl", "-u", "knot", "-o", "cat", "--no-pager",
                 "--since", since).count("[burst.test.]")
        supp = [l for l in sh("journalctl", "-o", "cat", "--no-pager", "--since", since)
                .splitlines() if re.search(r"Suppressed \d+ messages from", l)]
        show("rate limit (RateLimitBurst=100, RateLimitIntervalSec=2s)",
             "lines written (file target): %d\nlines in the journal: %d\n%s" %
             (sent, got, "\n".join(supp)))
        expect(got < sent and supp, "journald dropped lines and said so")
        k.stop()
    finally:
        j.send_signal(signal.SIGTERM)
        try:
            j.wait(timeout=10)
        except subprocess.TimeoutExpired:
            j.kill()
        os.remove("/etc/systemd/journald.conf.d/mxf-test.conf")
        if os.path.lexists("/dev/log"):
            os.remove("/dev/log")


def main():
    so = sys.argv[1]
    os.environ["MXFILTER_SO"] = so
    private_dev_run()
    sh("install", "-d", "-o", "knot", "-g", "knot", "/var/log/knot")
    phase_rsyslog(so)
    phase_journald(so)
    log("logging test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
