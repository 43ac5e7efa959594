#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The documentation against the running module.

- Every log-line example in README.md and docs/ has the shape of a line a
  real knotd with the module writes (a regex built from the example, its
  variable fields generalised), and every line the module writes in a run
  that exercises all its lines has the shape of a documented example.
- The counters documented (docs/mxfilter.rst, README.md) are exactly those
  `knotc -f zone-stats` prints.
- Every option of the module schema (MOD_* in module/mxfilter.c) has an
  entry in docs/mxfilter.rst with a `*Default:*` line, and appears in the
  rendered man page when it was built.
- The nslookup output shown in the operator guide is what nslookup prints,
  and the day-summary commands of log-format.md run on a real log.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import unittest

from knotharness import (COUNTERS, TRY_START_CONF, Config, Knotd, Zone, knotd_try_start, main,
                         module_so, require_module, summary)

SRC = os.environ.get("MXFILTER_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DOC_FILES = [os.path.join(SRC, "README.md")] + \
    sorted(glob.glob(os.path.join(SRC, "docs", "*.md"))) + \
    [os.path.join(SRC, "docs", "mxfilter.rst")]

# Documented lines the module cannot be made to write from outside, or that
# Knot writes, not the module. Matched against the example's text.
NOT_PRODUCIBLE = {
    "cannot enforce, MX and ANY": "caught by the configuration check first; "
                                  "only out of memory or a bypassed check",
    "audit limiter full": "needs the limiter's memory bound (1 GiB) reached; "
                          "test_audit.py reaches a lowered one",
}

LEGACY = """
@ MX 5 mailgate
@ MX 40 smtp.isp.net.
mailgate A 192.0.2.25
shop MX 10 mail.shop
mail.shop A 192.0.2.26
*.branch MX 30 old.example.
"""

POLICIES = [
    {"id": "securemail", "log-interval": 0},
    {"id": "securemail-audit", "mode": "audit"},
    {"id": "apex-only", "scope": "apex"},
    {"id": "refuse", "transfer": "refuse"},
]

ZONES = [
    Zone("your-domain.com", LEGACY, module="mod-mxfilter/securemail", serial=2024112801),
    Zone("example-shop.net", LEGACY, module="mod-mxfilter/securemail-audit"),
    Zone("apex.test", LEGACY, module="mod-mxfilter/apex-only"),
    Zone("refuse.test", LEGACY, module="mod-mxfilter/refuse", serial=7),
    Zone("nomx.test", "www A 192.0.2.1", module="mod-mxfilter"),
    Zone("partial-audit.test", "@ MX 10 france.security-mail.net.",
         module="mod-mxfilter/securemail-audit"),
    Zone("ok.test", "@ MX 10 france.security-mail.net.\n"
                    "@ MX 20 europe.security-mail.net.", module="mod-mxfilter"),
    # Signed; its keys are hidden after start so DO queries fail closed.
    Zone("signed.test", "@ MX 5 mailgate\nmailgate A 192.0.2.25",
         module="mod-mxfilter", extra={"dnssec-signing": True}),
]

LEVEL_RE = r"(?:debug|info|notice|warning|error|critical)"


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ----------------------------------------------------------------------------
# Log-line examples -> regexes

# Variable fields, by key (longest keys first when matching).
FIELDS = {
    "owner": r"\S+",
    "preference": r"\d+",
    "exchange": r"\S+",
    "risk": r"(?:bypass|fallback)",
    "client": r"[0-9a-fA-F.:-]+",
    "suppressed": r"\d+",
    "version": r"[0-9][0-9A-Za-z.+~-]*",
    "mode": r"(?:enforce|audit)",
    "scope": r"(?:zone|apex)",
    "exchanges": r"\d+ \S+(?: \d+ \S+)*",
    "type": r"(?:AXFR|IXFR)",
    "serial": r"\d+",
    "key store": r"'[^']*'",
    "entries": r"\d+",
    "memory": r"\d+",
    "limit": r"\d+",
}
SENTENCES = {
    "legacy MX": r"legacy MX (?:blocked|audit|observed)",
    "missing MX": r"missing MX (?:added|audit|observed)",
    "outgoing transfer": r"outgoing transfer (?:served|refused)",
}


def example_lines():
    """(file, line) of every module log-line example in the docs."""
    rx = re.compile(r"^\s*(?:#\s*)?(?:\S+T\S+ )?(?:%s: )?\[[^\]]+\] module 'mod-mxfilter" % LEVEL_RE)
    out = []
    for path in DOC_FILES:
        for line in read(path).splitlines():
            if "``" in line or line.lstrip().startswith("|") or "grep" in line:
                continue
            if rx.match(line):
                out.append((os.path.relpath(path, SRC), line.strip().lstrip("# ")))
    return out


def shape(example):
    """A regex for lines of the example's shape (searched in a log line)."""
    m = re.match(r"^(?:\S+T\S+ )?(?:(%s): )?\[[^\]]+\] module 'mod-mxfilter(?:/[^']+)?', (.*)$"
                 % LEVEL_RE, example)
    if not m:
        raise ValueError("not a module log line: %r" % example)
    level, text = m.group(1), m.group(2)
    reason = ""
    rm = re.search(r" \([^()]*\)$", text)
    if rm:
        text, reason = text[:rm.start()], r" \([^()]+\)"
    parts = []
    for i, tok in enumerate(text.split(", ")):
        if i == 0:
            for key, pat in SENTENCES.items():
                if tok.startswith(key + " "):
                    parts.append(pat)
                    break
            else:
                parts.append(re.escape(tok))
            continue
        for key in sorted(FIELDS, key=len, reverse=True):
            if tok.startswith(key + " "):
                parts.append(re.escape(key) + " " + FIELDS[key])
                break
        else:
            parts.append(re.escape(tok))
    head = (re.escape(level) + ": ") if level else r"(?:%s: )?" % LEVEL_RE
    return re.compile(r"(?:^|\s)" + head + r"\[[^\]]+\.\] module 'mod-mxfilter(?:/[^']+)?', "
                      + ", ".join(parts) + reason + "$")


class Docs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_module()
        cls.k = Knotd(Config(ZONES, policies=POLICIES, log_level="info"),
                      allow_module_errors=True)
        cls.k.start()
        k = cls.k
        for z in ("your-domain.com", "example-shop.net", "apex.test", "nomx.test", "ok.test",
                  "partial-audit.test"):
            for name in (z, "shop." + z, "x.branch." + z):
                k.kdig(name)
        k.kdig("your-domain.com", "AXFR")
        k.kdig("your-domain.com", "IXFR=2024112801")
        k.kdig("refuse.test", "AXFR")
        for f in glob.glob(os.path.join(k.dir, "storage", "keys", "keys", "*.pem")):
            os.rename(f, f + ".hidden")
        k.kdig("signed.test", do=True)
        k.settle_log()
        cls.lines = k.module_lines()
        # The signing error is written at module load: a zone on a PKCS #11
        # key store (which knotd then fails to sign; it keeps running).
        rc, out = knotd_try_start(SIGN_CONF, timeout=3)
        cls.lines += [l for l in out.splitlines() if "module 'mod-mxfilter" in l]

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()

    def test_examples_match_real_lines(self):
        """Every documented example has the shape of a real line."""
        examples = example_lines()
        self.assertGreater(len(examples), 10, examples)
        missing, checked = [], 0
        for path, ex in examples:
            if any(key in ex for key in NOT_PRODUCIBLE):
                continue
            rx = shape(ex)
            checked += 1
            if not any(rx.search(l) for l in self.lines):
                missing.append("%s: %s\n    regex %s" % (path, ex, rx.pattern))
        self.assertEqual(missing, [], "documented lines the module does not write "
                         "(real lines:\n%s)" % "\n".join(self.lines))
        summary("log examples", ["%d examples checked against %d real lines" %
                                 (checked, len(self.lines))])

    def test_real_lines_documented(self):
        """Every line the module wrote has a documented shape."""
        shapes = [shape(ex) for _, ex in example_lines()]
        undocumented = [l for l in self.lines
                        if " debug: " not in l and not any(rx.search(l) for rx in shapes)]
        self.assertEqual(undocumented, [], "module lines not documented in the docs")
        kinds = set()
        for l in self.lines:
            m = re.search(r"module 'mod-mxfilter(?:/[^']+)?', ([a-zA-Z ]+)", l)
            kinds.add(m.group(1).strip() if m else l)
        for kind in ("legacy MX blocked", "legacy MX audit", "legacy MX observed",
                     "missing MX added", "policy loaded", "outgoing transfer served",
                     "outgoing transfer refused", "failed to enforce MX",
                     "cannot sign enforced answers"):
            self.assertIn(kind, kinds, "the run did not produce every line")
        # One policy line per module configuration (the ids' settings all
        # differ here), at load.
        policy = self.k.module_lines(pattern="policy loaded")
        self.assertEqual(sorted(re.search(r"module '([^']+)'", l).group(1) for l in policy),
                         ["mod-mxfilter"] + ["mod-mxfilter/" + p["id"] for p in
                                             sorted(POLICIES, key=lambda p: p["id"])],
                         "\n".join(policy))
        # The policy line names the version this build was made with.
        version = os.environ.get("MXFILTER_VERSION")
        if version:
            for l in [l for l in self.lines if "policy loaded" in l]:
                self.assertIn(", policy loaded, version %s, " % version, l)

    def test_counters(self):
        """Documented counters == `knotc -f zone-stats` counters."""
        real = set(self.k.zone_stats("your-domain.com"))
        self.assertEqual(sorted(real), sorted(COUNTERS), real)
        rst = read(os.path.join(SRC, "docs", "mxfilter.rst"))
        block = set(re.findall(r"mod-mxfilter\.([a-z]+(?:\[[a-z]+\])?) = \d+", rst))
        self.assertEqual(block, real, "docs/mxfilter.rst zone-stats example")
        sec = rst[rst.index("\nCounters\n"):]
        sec = sec[:sec.index("\nFiles\n")]
        terms = set()
        for line in sec.splitlines():
            if re.match(r"^``[a-z]", line):
                terms |= set(re.findall(r"``([a-z]+(?:\[[a-z]+\])?)``", line))
        self.assertEqual(terms, real, "docs/mxfilter.rst counter definitions")
        readme = read(os.path.join(SRC, "README.md"))
        table = set(re.findall(r"^\| `([a-z]+)` \|", readme, re.M))
        self.assertEqual(table, {r.split("[")[0] for r in real}, "README.md counter table")
        for r in real:
            if "[" in r:
                base, sub = r[:-1].split("[")
                self.assertRegex(readme, r"`%s` \|[^\n]*`%s`" % (base, sub),
                                 "README.md: %s" % r)
        # The all-zones form documented in the operator guide.
        out = self.k.knotc("zone-stats", "--", "mod-mxfilter.audited")
        self.assertRegex(out, r"(?m)^\[example-shop\.net\.\] mod-mxfilter\.audited = [1-9]\d*$")

    def test_options(self):
        """Every schema option has a reference entry with *Default:*."""
        code = read(os.path.join(SRC, "module", "mxfilter.c"))
        opts = re.findall(r'#define\s+MOD_\w+\s+"\\x[0-9a-fA-F]{2}""([a-z-]+)"', code)
        self.assertGreaterEqual(len(opts), 8, opts)
        rst = read(os.path.join(SRC, "docs", "mxfilter.rst"))
        outline = rst[rst.index("Module reference\n"):]
        for opt in opts:
            m = re.search(r"\.\. _mod-mxfilter_%s:\n\n%s\n\.{%d}\n(.*?)(?=\n\.\. _mod-mxfilter_|\n[A-Z][^\n]*\n-+\n|\Z)"
                          % (re.escape(opt), re.escape(opt), len(opt)), rst, re.S)
            self.assertIsNotNone(m, "docs/mxfilter.rst: no entry for option %r" % opt)
            self.assertRegex(m.group(1), r"(?m)^\*Default:\* \S", "option %r" % opt)
            self.assertRegex(outline, r"(?m)^\s+%s: " % re.escape(opt),
                             "option %r not in the reference outline" % opt)
        man = self.man_page()
        if man is None:
            summary("options", ["%d options documented; man page not built "
                                "(rst2man missing)" % len(opts)])
            return
        text = read(man)
        # docutils up to 0.21 upper-cases the title, 0.22+ keeps its case.
        self.assertRegex(text, r'(?m)^\.TH "(?:MOD-MXFILTER|mod-mxfilter)" "?7"? ')
        for opt in opts:
            self.assertRegex(text, r"(?m)^\.SS %s$" % re.escape(opt.replace("-", r"\-")),
                             "man page: option %r" % opt)
        summary("options", ["%d options documented, also in %s" % (len(opts), man)])

    @staticmethod
    def man_page():
        path = os.environ.get("MXFILTER_MAN")
        if not path:
            build = os.path.dirname(os.path.dirname(os.path.abspath(module_so())))
            path = os.path.join(build, "docs", "mod-mxfilter.7")
        return path if os.path.exists(path) else None

    def test_nslookup_example(self):
        """operator-guide.md's nslookup output is nslookup's."""
        guide = read(os.path.join(SRC, "docs", "operator-guide.md"))
        doc = re.findall(r"(?m)^your-domain\.com\tmail exchanger = .*$", guide)
        self.assertEqual(len(doc), 2, doc)
        rc, out = self.k.nslookup("your-domain.com")
        real = re.findall(r"(?m)^your-domain\.com\tmail exchanger = .*$", out)
        self.assertEqual(real, doc, out)

    def test_summary_commands(self):
        """log-format.md's day summaries run on a real log."""
        doc = read(os.path.join(SRC, "docs", "log-format.md"))
        blocks = re.findall(r"```sh\n(.*?)```", doc, re.S)
        per_risk = next(b for b in blocks if "-N ZONE,RISK,LINES,OCCURRENCES" in b)
        # The block starts with the journal; a file target's first command
        # (log-format.md's table) replaces it. tests/debian/logging.py runs
        # the blocks on real rsyslog and journald output too.
        day = self.lines[0][:10]
        self.assertRegex(per_risk, r"^journalctl -u knot [^\n]* -o cat \|\n")
        cmd = re.sub(r"^journalctl [^\n]*\|", "grep -h '^%sT' %s |" % (day, self.k.log_path),
                     per_risk)
        out = subprocess.run(["sh", "-c", cmd], stdout=subprocess.PIPE,
                             universal_newlines=True, timeout=20).stdout
        self.assertRegex(out, r"(?m)^ZONE +RISK +LINES +OCCURRENCES$")
        self.assertRegex(out, r"(?m)^your-domain\.com\. +bypass +\d+ +\d+$", out)
        self.assertRegex(out, r"(?m)^your-domain\.com\. +fallback +\d+ +\d+$", out)
        if shutil.which("jq") is None:
            return
        jq = next(b for b in blocks if "jq -r" in b)
        journal = os.path.join(self.k.dir, "journal.json")
        with open(journal, "w") as f:
            for l in self.lines:
                msg = re.sub(r"^\S+T\S+ ", "", l)
                f.write(json.dumps({"_SYSTEMD_UNIT": "knot.service", "MESSAGE": msg}) + "\n")
        cmd = re.sub(r"^journalctl [^|]*\|", "cat %s |" % journal, jq)
        out = subprocess.run(["sh", "-c", cmd], stdout=subprocess.PIPE,
                             universal_newlines=True, timeout=20).stdout
        self.assertRegex(out, r"(?m)^example-shop\.net\. +audit +bypass +\d+ +\d+$", out)
        self.assertRegex(out, r"(?m)^your-domain\.com\. +blocked +fallback +\d+ +\d+$", out)


SIGN_CONF = TRY_START_CONF + """keystore:
  - id: hsm
    backend: pkcs11
    config: "pkcs11:token=knot;pin-value=1234 /nonexistent/libpkcs11.so"
policy:
  - id: hsm
    keystore: hsm
zone:
  - domain: your-domain.com
    storage: @RUNDIR@
    dnssec-signing: on
    dnssec-policy: hsm
    module: mod-mxfilter
"""


if __name__ == "__main__":
    main()
