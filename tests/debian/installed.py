#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Debian package in use, as an operator follows the guide.

Run by tests/debian/package-test inside a Debian root (tests/debian/run
RELEASE --run tests/debian/package-test), as root, never on a machine that
serves DNS: it installs the package, writes /etc/knot/knot.conf and runs
knotd as knot.service does, and puts everything back at the end.

  installed.py V1.deb V2.deb [MESON-TEST...]

1. `apt-get install ./V1.deb`: the stripped module (0644) in knotd's module
   directory, Depends on the running Knot series.
2. /etc/knot/knot.conf as docs/operator-guide.md says (no `module: file:`),
   one plain and one automatically signed enrolled zone; the log directory
   made as the guide says; knotd started the way knot.service does:
   `knotc conf-check` then `/usr/sbin/knotd -m 512`, both as user knot,
   /run/knot owned by knot. kdig, nslookup and delv see the filtering set.
3. With the package installed, the build tree's suite still runs (the
   harness hides the installed copy): `meson test MESON-TEST...` (none given:
   skipped; `all`: the whole suite), and configs/demo.sh.
4. Upgrade to V2: the old code keeps running through `knotc reload`
   (/proc/PID/maps: `mxfilter.so (deleted)`); after a restart the
   `policy loaded` line names V2. Rollback to V1 the same way.
5. Removal as the guide says: configuration first (conf-check, reload),
   then the package, then a restart; `knotc status` keeps working. The wrong
   order (package first) makes `knotc` refuse the configuration.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))

import knotharness as kh  # noqa: E402

CONF = "/etc/knot/knot.conf"
STORAGE = "/var/lib/knot"
LOGDIR = "/var/log/knot"
LOG = LOGDIR + "/knot.log"
RUNDIR = "/run/knot"
PKG = "knot-module-mxfilter"
FILTER = kh.FILTER_SET
LEGACY = ("mailgate", "smtp.isp.net")
ZONES = {
    "plain.test": "@ MX 5 mailgate\n@ MX 40 smtp.isp.net.\nmailgate A 192.0.2.25\n",
    "signed.test": "@ MX 5 mailgate\nmailgate A 192.0.2.25\n",
}

# /etc/knot/knot.conf as the operator guide writes it: Debian's file plus
# the module's sections and the zones; no `module:` section.
GUIDE_CONF = """server:
    rundir: "/run/knot"
    user: knot:knot
    automatic-acl: on
    listen: 127.0.0.1@{port}

log:
  - target: syslog
    any: info
  - target: /var/log/knot/knot.log
    any: info

database:
    storage: "/var/lib/knot"
{module}
template:
  - id: default
    storage: "/var/lib/knot"
    file: "%s.zone"

zone:
  - domain: plain.test
{plain}  - domain: signed.test
    dnssec-signing: on
{signed}"""

MODULE_CONF = """
mod-mxfilter:
  - id: securemail
    exchange: [ "10 france.security-mail.net.", "20 europe.security-mail.net." ]
"""


def log(msg):
    print("== " + msg, flush=True)


def sh(*cmd, check=True, timeout=300, cwd=None, input=None):
    p = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=timeout, cwd=cwd, input=input)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stdout))
    return p.returncode, p.stdout


def expect(cond, what, detail=""):
    if not cond:
        raise AssertionError(what + ("\n" + detail if detail else ""))
    print("   ok: " + what, flush=True)


def write_conf(port, enrolled=True):
    mod = "    module: mod-mxfilter/securemail\n" if enrolled else ""
    with open(CONF, "w") as f:
        f.write(GUIDE_CONF.format(port=port, module=MODULE_CONF if enrolled else "",
                                  plain=mod, signed=mod))


class Service(kh.Knotd):
    """knotd run the way knot.service runs it (ExecStartPre's conf-check,
    then knotd as user knot), on /etc/knot/knot.conf as write_conf() left it,
    read through knotc's default configuration (the control socket in
    /run/knot) and the file target. Its own directory holds the trust
    anchors, across restarts."""

    STOP_TIMEOUT = 20.0

    def __init__(self, port):
        super().__init__(kh.Config([kh.Zone(z) for z in ZONES], module=False),
                         name="knot.service", port=port)

    @property
    def log_path(self):
        return LOG

    def knotc_argv(self):
        return ["knotc", "-t", "10"]

    def prepare(self):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="mxf-installed-")
        # RuntimeDirectory=knot: /run/knot made for user knot at each start.
        os.makedirs(RUNDIR, exist_ok=True)
        shutil.chown(RUNDIR, "knot", "knot")
        os.chmod(RUNDIR, 0o755)
        rc, out = sh("runuser", "-u", "knot", "--", "/usr/sbin/knotc", "conf-check",
                     check=False)
        expect(rc == 0 and "Configuration is valid" in out,
               "ExecStartPre: knotc conf-check (as knot) accepts the configuration", out)

    def write_conf(self):
        pass  # The operator's file: written by write_conf(port) of this script.

    def command(self):
        return ["runuser", "-u", "knot", "--", "/usr/sbin/knotd", "-m", "512"]

    def knotd_pid(self):
        """runuser forks: knotd is its child."""
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    fields = f.read().rsplit(")", 1)
            except OSError:
                continue
            comm = fields[0].split("(", 1)[1]
            if comm == "knotd" and int(fields[1].split()[1]) == self.pid:
                return int(stat.split("/")[2])
        raise AssertionError("no knotd below runuser (pid %d)" % self.pid)

    def maps(self):
        with open("/proc/%d/maps" % self.knotd_pid()) as f:
            return [l for l in f.read().splitlines() if "mxfilter" in l]

    def restart(self):
        self.stop(keep_dir=True)
        self.start()


def expect_ok(check, what):
    """CHECK() raises AssertionError (a harness check) or passes."""
    check()
    print("   ok: " + what, flush=True)


def check_answers(k, mark):
    expect_ok(lambda: kh.assert_enforced(k.kdig("plain.test", "MX"), "plain.test.",
                                         legacy=LEGACY, what="kdig MX plain.test"),
              "kdig MX plain.test: the filtering set, no address of a legacy exchanger")
    rc, out = k.nslookup("plain.test")
    got = re.findall(r"mail exchanger = (\d+) (\S+)", out)
    expect(sorted((int(p), n) for p, n in got) == FILTER, "nslookup: two filtering exchangers",
           out)
    expect_ok(lambda: kh.assert_enforced(k.kdig("signed.test", "MX", do=True), "signed.test.",
                                         legacy=LEGACY, signed=True, what="kdig +dnssec"),
              "kdig +dnssec MX signed.test: the filtering set with its RRSIG")
    anchor = k.trust_anchor("signed.test")
    expect_ok(lambda: kh.assert_validated(k.delv("signed.test", "signed.test", anchor=anchor),
                                          "signed.test.", legacy=LEGACY, what="delv"),
              "delv with the zone's KSK: fully validated filtering set")
    # One line per legacy record (log-interval 60): plain.test's two,
    # signed.test's one.
    # A reload or restart since the mark may also have written the lines of
    # occurrences held back before it (`client -`, log-format.md "Rate
    # limiting"): those are not about these queries.
    k.wait_log(r"legacy MX blocked, .*, client 127\.0\.0\.1, ", since=mark, count=3, timeout=10)
    k.settle_log()
    lines = [l for l in k.module_lines(mark, "legacy MX") if ", client -, " not in l]
    got = sorted(re.search(r"\[(\S+)\] module 'mod-mxfilter/securemail', legacy MX blocked, "
                           r"owner \1, preference (\d+), ", l).groups() for l in lines)
    expect(got == [("plain.test.", "40"), ("plain.test.", "5"), ("signed.test.", "5")],
           "one legacy MX blocked line per record in %s" % LOG, "\n".join(lines))
    d = k.stats_delta("plain.test", lambda: k.kdig("plain.test", "MX", tcp=True))
    expect((d["enforced"], d["blocked[bypass]"], d["blocked[fallback]"]) == (1, 1, 1),
           "knotc zone-stats plain.test mod-mxfilter: one more enforced answer", str(d))


def version_line(k, version, mark):
    lines = k.wait_log(r"policy loaded, version ", since=mark, timeout=15)
    expect(lines and all(", policy loaded, version %s, " % version in l for l in lines),
           "after the start, the policy line names version %s" % version, "\n".join(lines))


def troubleshooting_grep():
    """The pattern of troubleshooting.md's "did the module load" grep."""
    with open(os.path.join(SRC, "docs", "troubleshooting.md")) as f:
        m = re.search(r'journalctl -u knot -o cat \| grep -E "([^"]*unknown module[^"]*)"', f.read())
    expect(m is not None, "troubleshooting.md has the module-load grep")
    return m.group(1)


def deb_version(path):
    return sh("dpkg-deb", "-f", path, "Version")[1].strip()


def installed_version():
    rc, out = sh("dpkg-query", "-W", "-f", "${Status} ${Version}", PKG, check=False)
    m = re.match(r"install ok installed (\S+)$", out.strip())
    return m.group(1) if rc == 0 and m else None


def apt_install(deb, *opts):
    sh("apt-get", "install", "-y", "-q", "-o", "Dpkg::Use-Pty=0", *opts, "./" +
       os.path.basename(deb), cwd=os.path.dirname(os.path.abspath(deb)))


def main():
    if os.geteuid() != 0:
        print("installed.py: must run as root inside a Debian root (tests/debian/run)")
        return 2
    v1_deb, v2_deb = sys.argv[1], sys.argv[2]
    meson_tests = sys.argv[3:]
    v1, v2 = deb_version(v1_deb), deb_version(v2_deb)
    expect(installed_version() is None, "%s is not installed before the test" % PKG)
    moddir = sh("pkg-config", "--variable=module_instdir", "knotd")[1].strip()
    saved_conf = open(CONF).read()
    k = None
    try:
        log("1. install %s" % os.path.basename(v1_deb))
        apt_install(v1_deb)
        expect(installed_version() == v1, "dpkg: %s %s installed" % (PKG, v1))
        so = os.path.join(moddir, "mxfilter.so")
        st = os.stat(so)
        expect(oct(st.st_mode & 0o777) == "0o644", "%s has mode 0644" % so)
        rc, sections = sh("readelf", "-S", so)
        expect(".debug_info" not in sections, "the module is stripped")
        depends = sh("dpkg-query", "-W", "-f", "${Depends}", PKG)[1]
        knot = sh("pkg-config", "--modversion", "knotd")[1].strip()
        major, minor = knot.split(".")[:2]
        expect("knot (>= %s), knot (<< %s.%d~)" % (knot, major, int(minor) + 1) in depends,
               "Depends: %s" % depends)

        # Both ways at once: the installed copy and a module: file: section.
        dup = tempfile.mkdtemp(prefix="mxf-dup-")
        with open(os.path.join(dup, "knot.conf"), "w") as f:
            f.write("server:\n  rundir: %s\nmodule:\n  - id: mod-mxfilter\n    file: %s\n"
                    "zone:\n  - domain: plain.test\n    storage: %s\n    module: mod-mxfilter\n"
                    % (dup, so, dup))
        rc, out = sh("knotc", "-c", os.path.join(dup, "knot.conf"), "conf-check", check=False)
        expect(rc != 0 and "duplicate module" in out,
               "installed copy plus module: file: is refused", out)
        print("      " + "\n      ".join(out.strip().splitlines()))
        rc, hits = sh("sh", "-c", 'grep -E "$1"', "sh", troubleshooting_grep(), check=False,
                      input=out)
        expect(rc == 0, "troubleshooting.md's grep finds it: " + hits.strip())
        shutil.rmtree(dup, ignore_errors=True)

        log("2. /etc/knot/knot.conf as the guide says, knotd as knot.service runs it")
        for zone, body in ZONES.items():
            path = os.path.join(STORAGE, zone + ".zone")
            with open(path, "w") as f:
                f.write(kh.zone_text(zone, body))
            shutil.chown(path, "knot", "knot")
        sh("install", "-d", "-o", "knot", "-g", "knot", LOGDIR)
        port = kh.free_port()
        write_conf(port)
        k = Service(port)
        k.start()
        mark = 0
        version_line(k, v1, mark)
        k.kdig("signed.test", "DNSKEY")
        check_answers(k, mark)

        log("3. the build tree's tests with the package installed")
        if meson_tests:
            build = tempfile.mkdtemp(prefix="mxf-build-")
            sh("meson", "setup", build, "-Dwerror=true", cwd=SRC)
            args = [] if meson_tests == ["all"] else meson_tests
            rc, out = sh("meson", "test", "-C", build, "--print-errorlogs", *args,
                         check=False, timeout=2400, cwd=SRC)
            print("\n".join(l for l in out.splitlines()
                            if re.match(r"\s*\d+/\d+ |Ok:|Fail:|Skipped:|Timeout:", l)))
            expect(rc == 0, "meson test %s with %s installed" % (" ".join(meson_tests), PKG),
                   out[-6000:])
            rc, out = sh("configs/demo.sh", build, check=False, timeout=120, cwd=SRC)
            expect(rc == 0 and "hidden from both servers" in out and
                   "mail exchanger = 10 france.security-mail.net." in out,
                   "configs/demo.sh with %s installed" % PKG, out[-3000:])
            shutil.rmtree(build, ignore_errors=True)
        else:
            print("   (no meson tests asked for)")

        log("4. upgrade to %s, then roll back to %s" % (v2, v1))
        apt_install(v2_deb)
        expect(installed_version() == v2, "dpkg: %s %s installed" % (PKG, v2))
        mark = k.mark()
        k.knotc("reload")
        k.wait_zones_loaded()
        maps = k.maps()
        expect(maps and all(l.endswith("(deleted)") for l in maps),
               "after the upgrade and knotc reload, knotd still runs the old file", "\n".join(maps))
        expect(not k.wait_log(r"version %s" % re.escape(v2), since=mark, timeout=2),
               "and no policy line names %s" % v2)
        k.restart()
        version_line(k, v2, mark)
        expect(not [l for l in k.maps() if "(deleted)" in l], "after the restart: the new file")
        check_answers(k, mark)
        mark = k.mark()
        apt_install(v1_deb, "--allow-downgrades")
        expect(installed_version() == v1, "rollback: %s %s installed" % (PKG, v1))
        k.restart()
        version_line(k, v1, mark)

        log("5. removal: the package first is the wrong order")
        sh("dpkg", "--remove", PKG)
        rc, out = sh("knotc", "status", check=False)
        expect(rc != 0 and "unknown module" in out,
               "package removed, configuration unchanged: knotc refuses it", out)
        print("      " + "\n      ".join(out.strip().splitlines()))
        rc, hits = sh("sh", "-c", 'grep -E "$1"', "sh", troubleshooting_grep(), check=False,
                      input=out)
        expect(rc == 0, "troubleshooting.md's grep finds it: " + hits.strip())
        apt_install(v1_deb)
        rc, out = sh("knotc", "status", check=False)
        expect(rc == 0, "reinstalled: knotc status works again", out)

        log("5. removal as the guide says: configuration, reload, package, restart")
        write_conf(port, enrolled=False)
        rc, out = sh("knotc", "conf-check", check=False)
        expect(rc == 0, "knotc conf-check without the module", out)
        k.knotc("reload")
        k.wait_zones_loaded()
        r = k.kdig("plain.test", "MX")
        expect((5, "mailgate.plain.test.") in r.mx(), "the zone's own MX is served again",
               r.text())
        sh("apt-get", "remove", "-y", "-q", PKG)
        expect(installed_version() is None, "dpkg: %s removed" % PKG)
        expect(not os.path.exists(so), "%s is gone" % so)
        rc, out = sh("knotc", "status", check=False)
        expect(rc == 0, "knotc status still works", out)
        k.restart()
        expect(not k.maps(), "after the restart knotd maps no mxfilter.so")
        k.stop()
        k = None
        log("installed-mode test passed (%s, %s -> %s -> %s, removed)" % (knot, v1, v2, v1))
        return 0
    finally:
        if k is not None:
            try:
                k.stop()
            except Exception as e:  # noqa: BLE001
                print("stop: %s" % e)
        subprocess.run(["dpkg", "--purge", PKG], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        with open(CONF, "w") as f:
            f.write(saved_conf)
        for zone in ZONES:
            for path in glob.glob(os.path.join(STORAGE, zone + ".zone*")):
                os.remove(path)
        for sub in ("keys", "journal", "timers", "catalog"):
            shutil.rmtree(os.path.join(STORAGE, sub), ignore_errors=True)
        shutil.rmtree(LOGDIR, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
