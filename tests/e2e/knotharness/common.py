# SPDX-License-Identifier: GPL-3.0-or-later
"""What every part of the harness shares: the programs, the environment the
build and the runners set, processes that die with the test, bounded waits,
an installed mod-mxfilter kept out of the way, and the test runner."""

import atexit
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"
KNOTC = shutil.which("knotc") or "/usr/sbin/knotc"
KEYMGR = shutil.which("keymgr") or "/usr/sbin/keymgr"

SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|"
                          r"UndefinedBehaviorSanitizer|runtime error:|"
                          r"ThreadSanitizer")

# Everything started here that is still running: stopped at exit.
_RUNNING = set()


def _cleanup_all():
    for p in list(_RUNNING):
        try:
            p.stop(check=False)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_cleanup_all)


def _sigterm(signum, frame):
    # meson's timeout sends SIGTERM: turn it into SystemExit so the
    # context managers and atexit stop every server.
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


def spawn(owner, argv, output, env=None):
    """Start ARGV in the background for OWNER (an object with stop(check)),
    stdout and stderr appended to the file OUTPUT, no stdin; it dies with
    this process and OWNER.stop(check=False) runs at exit. Returns the
    Popen."""
    with open(output, "a") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                env=env, preexec_fn=_pdeathsig)
    _RUNNING.add(owner)
    return proc


def stopped(owner):
    """OWNER (see spawn()) has nothing left running."""
    _RUNNING.discard(owner)


def run(cmd, timeout=20, env=None, input=None):
    """Run CMD, return (rc, stdout, stderr)."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=env, input=input,
                       universal_newlines=True)
    return p.returncode, p.stdout, p.stderr


def read_file(path):
    """The text of PATH, '' if it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def keep_dirs():
    """Whether $MXFILTER_KEEP asks to keep the temporary directories."""
    return bool(os.environ.get("MXFILTER_KEEP"))


def remove_dir(path):
    """Remove a temporary directory, or say where it was kept."""
    if not path:
        return
    if keep_dirs():
        sys.stderr.write("kept %s\n" % path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def poll(fn, timeout=60.0, step=0.5):
    """Call FN every STEP seconds until it returns a true value or TIMEOUT
    seconds have passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


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


# ----------------------------------------------------------------------------
# The module under test

def module_so(var="MXFILTER_SO"):
    """Path of a built module ($MXFILTER_SO, or VAR), or None."""
    path = os.environ.get(var, "")
    return path if path and os.path.exists(path) else None


def require_module(var="MXFILTER_SO"):
    """module_so(VAR), or skip the test (unittest.SkipTest)."""
    path = module_so(var)
    if path is None:
        raise unittest.SkipTest("%s not set or missing (%r): build the module "
                                "and run through meson test" %
                                (var, os.environ.get(var)))
    return path


def faulty_module():
    """The fault-injection build ($MXFILTER_FAULTY_SO), or skip."""
    return require_module("MXFILTER_FAULTY_SO")


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


def sanitized():
    """Whether the module is a sanitizer build ($MXFILTER_PRELOAD)."""
    return bool(os.environ.get("MXFILTER_PRELOAD"))


def check_sanitizer(output, what):
    """AssertionError if OUTPUT holds a sanitizer report."""
    if SANITIZER_RE.search(output or ""):
        raise AssertionError("sanitizer report from %s:\n%s" % (what, output[-6000:]))


def _module_dir():
    d = os.environ.get("MXFILTER_MODULE_DIR")
    if d:
        return d
    try:
        rc, out, _ = run(["pkg-config", "--variable=module_instdir", "knotd"], timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip() if rc == 0 and out.strip() else None


_INSTALLED = []  # [(path or None, module dir)], computed once


def installed_module():
    """An installed copy of mod-mxfilter that knotd loads by itself (a .so in
    its module directory, $MXFILTER_MODULE_DIR or pkg-config's
    module_instdir, declaring the module), or None."""
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


def knot_series():
    """(major, minor) of the installed knotd, (0, 0) if unknown."""
    try:
        rc, out, _ = run([KNOTD, "--version"], timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return (0, 0)
    m = re.search(r"(\d+)\.(\d+)\.", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


# ----------------------------------------------------------------------------
# Running a test file

def summary(title, lines):
    """Print LINES under a title: what a test saw, for the reader of the log."""
    sys.stdout.write("== %s ==\n%s\n" % (title, "\n".join("  " + l for l in lines)))
    sys.stdout.flush()


def main():
    """unittest.main with verbose output and a clear summary; exit status 77
    (meson: skipped) when every test skipped."""
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
