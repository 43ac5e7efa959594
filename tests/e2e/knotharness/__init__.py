# SPDX-License-Identifier: GPL-3.0-or-later
"""End-to-end harness: a real knotd on 127.0.0.1 and the real clients a user
checks it with. Python 3 standard library only. Every wait is bounded in
time; every process started here is stopped on exit (knotd: knotc stop,
then SIGTERM, then SIGKILL), also when a test fails, at interpreter exit
and if this process dies (PR_SET_PDEATHSIG).

A test reads:

    import unittest

    from knotharness import Config, Knotd, Zone, assert_enforced, main

    class Seed(unittest.TestCase):
        def test_apex(self):
            zone = Zone("your-domain.com", "@ MX 5 mailgate", module="mod-mxfilter")
            with Knotd([zone]) as k:
                assert_enforced(k.wire("your-domain.com", "MX"), "your-domain.com.",
                                legacy=["mailgate"])

    if __name__ == "__main__":
        main()

The public API, by concern (tests use nothing else):

  server   Config (knot.conf as data), Knotd (start/stop, knotc, reload,
           zone files, counters, zone-read, log waits, KSKs and delv),
           WithReference (a server pair with and without the module),
           conf_check(), knotd_try_start(), TRY_START_CONF, Raw
  clients  Result; kdig(), kdig_text(), dig(), nslookup(), delv() (Delv),
           dig_available(), delv_available(),
           wire_query()/parse_wire() (0x20 kept), make_query(), opt_rr(),
           udp_exchange(), tcp_exchange(), parse_strict(), mx_groups()
           (hostile packets); Clients (all of them bound to a server's
           port); Unbound (a validating resolver)
  zones    FILTER_SET, mx_set(), Zone, zone_text(); FAST_POLICIES (signing
           policies of tiny timings), rrsig(), sigs(), key_tags(),
           ksk_rdata(), delv_anchors()
  checks   assert_enforced() (the enforced answer), assert_no_legacy(),
           assert_validated() (delv's view of it), covered(), COUNTERS
  common   main(), summary(), run(), poll(), free_port(), module_so(),
           require_module(), faulty_module(), sanitized(), sanitizer_env(),
           knot_argv(), installed_module(), knot_series(), KNOTD, KNOTC,
           KEYMGR

Environment (set by meson test, tests/e2e/meson.build):
  MXFILTER_SO          the built module (mxfilter.so); tests skip without it
  MXFILTER_FAULTY_SO   the fault-injection build (MXFILTER_FAULT=enomem|load,
                       MXFILTER_AUDIT_MEMORY in knotd's environment)
  MXFILTER_PRELOAD     sanitizer runtime(s) to LD_PRELOAD into knotd and
                       knotc; a sanitizer report on knotd's stderr fails
                       the test
  MXFILTER_SRC         the source tree (docs and configs the tests read)
  MXFILTER_VERSION     the module's version (the `policy loaded` line)
  MXFILTER_KEEP        keep the temporary directories (debugging)
  MXFILTER_MODULE_DIR  knotd's module directory (default: pkg-config's
                       module_instdir of knotd)

An installed mod-mxfilter (a package or `meson install` in knotd's module
directory, which knotd loads by itself) would make knotd refuse every
configuration that also loads the build tree's module ("duplicate module").
So when one is installed, every Knot program that reads a configuration
(knotd, `knotc -c`, keymgr: knot_argv()) runs in a private mount namespace
where an empty directory hides the module directory (as root; otherwise in
a user namespace where the kernel allows it), and the tests see the build
tree's module only. Where neither works, the harness refuses with a
message naming the installed file.
"""

from .checks import COUNTERS, assert_enforced, assert_no_legacy, assert_validated, covered
from .clients import (DELV, KDIG, RCODES, TYPE_NAMES, TYPES, Clients, Delv, Result,
                      Unbound, delv, delv_available, dig, dig_available, kdig, kdig_text, make_query,
                      mx_groups, nslookup, opt_rr, parse_strict, parse_wire, qname_wire,
                      tcp_exchange, udp_exchange, wire_query)
from .common import (KEYMGR, KNOTC, KNOTD, check_sanitizer, faulty_module, free_port,
                     installed_module, knot_argv, knot_series, main, module_so, poll,
                     read_file, require_module, run, sanitized, sanitizer_env, summary)
from .server import (TRY_START_CONF, Config, Knotd, Raw, WithReference, conf_check,
                     knotd_try_start)
from .zones import (FAST_POLICIES, FILTER_SET, Zone, delv_anchors, key_tags, ksk_rdata,
                    mx_set, rrsig, sigs, zone_text)

__all__ = [
    "COUNTERS", "DELV", "FAST_POLICIES", "FILTER_SET", "KDIG", "KEYMGR", "KNOTC", "KNOTD",
    "RCODES", "TRY_START_CONF", "TYPE_NAMES", "TYPES", "assert_enforced",
    "assert_no_legacy", "assert_validated", "check_sanitizer", "Clients", "conf_check",
    "Config", "covered", "delv", "Delv", "delv_anchors", "delv_available", "dig",
    "dig_available", "faulty_module", "free_port", "installed_module", "kdig", "kdig_text",
    "key_tags", "knot_argv", "knot_series", "Knotd", "knotd_try_start", "ksk_rdata", "main",
    "make_query", "module_so", "mx_groups", "mx_set", "nslookup", "opt_rr", "parse_strict",
    "parse_wire", "poll", "qname_wire", "Raw", "read_file", "require_module", "Result",
    "rrsig", "run", "sanitized", "sanitizer_env", "sigs", "summary", "tcp_exchange",
    "udp_exchange", "Unbound", "wire_query", "WithReference", "Zone", "zone_text",
]
