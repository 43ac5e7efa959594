#!/usr/bin/env bash
# demo.sh: show mod-mxfilter at work on loopback.
#
# Usage: configs/demo.sh BUILD_DIR
#
# Starts two knotd servers on 127.0.0.1 with the same zone (configs/demo.zone):
# one without the module ("the zone data says") and one with mod-mxfilter
# (configs/demo.conf, "mxfilter serves").  It asks both the same questions with
# kdig and nslookup, then prints the module's log lines and counters and stops
# both servers.  Everything lives in a temporary directory that is removed on
# exit.  Needs knotd, knotc, kdig, nslookup and python3; no root needed unless
# knotd refuses to run otherwise, or mod-mxfilter is installed too (below).
#
# An installed mod-mxfilter (the Debian package, or meson install) sits in
# knotd's module directory (pkg-config --variable=module_instdir knotd),
# which knotd loads by itself; it would then refuse the demo's configuration,
# which loads BUILD_DIR's module as well ("duplicate module").  So with one
# installed, both servers run in a private mount namespace where an empty
# directory hides the module directory (as root, or in a user namespace where
# the kernel allows that); otherwise the demo stops and names the file.
#
# SPDX-License-Identifier: GPL-3.0-or-later

set -euo pipefail

ZONE=your-domain.com
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "demo.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
[ -d "$1" ] || die "no such build directory: $1"
MODULE=$(cd "$1" && pwd)/module/mxfilter.so
[ -f "$MODULE" ] || die "module not built: $MODULE (run: meson compile -C $1)"
for tool in knotd knotc kdig nslookup python3; do
	command -v "$tool" >/dev/null || die "missing tool: $tool"
done

# Two free ports on 127.0.0.1, each free for both TCP and UDP.
read -r PLAIN_PORT FILTER_PORT < <(python3 - <<'PY'
import socket
ports = []
while len(ports) < 2:
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
        ports.append(port)
    except OSError:
        pass
    u.close()
    t.close()
print(*ports)
PY
)

DIR=$(mktemp -d /tmp/mxfilter-demo.XXXXXX)
PIDS=()

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

section() { printf '\n==== %s ====\n\n' "$*"; }

# Hide an installed copy of the module from both servers (see the top).
HIDE=()
MODDIR=$(pkg-config --variable=module_instdir knotd 2>/dev/null || true)
INSTALLED=
if [ -n "$MODDIR" ] && [ -d "$MODDIR" ]; then
	INSTALLED=$(grep -l -a -F 'mod-mxfilter' "$MODDIR"/*.so 2>/dev/null | head -n 1 || true)
fi
if [ -n "$INSTALLED" ]; then
	mkdir "$DIR/empty"
	bind=(sh -ec 'mount --bind "$1" "$2"; shift 2; exec "$@"' hide "$DIR/empty" "$MODDIR")
	for ns in "--mount" "--user --map-root-user --mount"; do
		# shellcheck disable=SC2206  # $ns: the options, split on purpose
		try=(unshare $ns --propagation private "${bind[@]}")
		if "${try[@]}" sh -c '[ -z "$(ls -A "$0")" ]' "$MODDIR" 2>/dev/null; then
			HIDE=("${try[@]}")
			break
		fi
	done
	[ ${#HIDE[@]} -gt 0 ] || die "mod-mxfilter is installed as $INSTALLED; knotd loads" \
		"it by itself and would refuse a configuration that also loads $MODULE" \
		"(duplicate module). Run the demo as root (it then hides the installed" \
		"copy), or remove the package (README.md, Debian package)."
fi

# The server without the module: the same zone file, nothing else.
mkdir -p "$DIR/plain/run" "$DIR/plain/db" "$DIR/filtered/run" "$DIR/filtered/db"
cp "$HERE/demo.zone" "$DIR/plain/$ZONE.zone"
cp "$HERE/demo.zone" "$DIR/filtered/$ZONE.zone"
cat >"$DIR/plain/knot.conf" <<EOF
server:
    rundir: "$DIR/plain/run"
    listen: 127.0.0.1@$PLAIN_PORT
database:
    storage: "$DIR/plain/db"
log:
  - target: "$DIR/plain/knotd.log"
    any: info
template:
  - id: default
    storage: "$DIR/plain"
    file: "%s.zone"
zone:
  - domain: $ZONE
EOF

# The server with the module: configs/demo.conf with its placeholders filled.
sed -e "s|@PORT@|$FILTER_PORT|g" -e "s|@DIR@|$DIR/filtered|g" \
    -e "s|@MODULE@|$MODULE|g" "$HERE/demo.conf" >"$DIR/filtered/knot.conf"

# Start knotd with the configuration in $1/knot.conf, wait until it answers
# the zone's SOA on port $2 (at most 10 s).
start_knotd() {
	local dir=$1 port=$2 _
	"${HIDE[@]}" knotd -c "$dir/knot.conf" >"$dir/knotd.out" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 1 50); do
		if kdig @127.0.0.1 -p "$port" +short +retry=0 +timeout=1 \
		        SOA "$ZONE" 2>/dev/null | grep -q .; then
			return 0
		fi
		if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then
			cat "$dir/knotd.out" "$dir/knotd.log" >&2 2>/dev/null || true
			die "knotd ($dir/knot.conf) exited"
		fi
		sleep 0.2
	done
	cat "$dir/knotd.log" >&2 2>/dev/null || true
	die "knotd ($dir/knot.conf) does not answer on 127.0.0.1@$port"
}

# ask PORT KDIG-ARGS...: one question, answer and additional sections only.
ask() {
	local port=$1
	shift
	kdig @127.0.0.1 -p "$port" +retry=0 +timeout=2 +norec \
	     +noall +header +answer +additional "$@" |
		awk '/^;; ->>HEADER<<-/ { sub(/.*status: /, ""); sub(/;.*/, ""); rcode = $0; next }
		     /^;; Flags:/ { sub(/^;; Flags: /, ""); sub(/;.*/, "");
		                    printf "    %s, flags: %s\n", rcode, $0; next }
		     /^[^;]/ { $1 = $1; print "    " $0 }'
}

# compare TITLE KDIG-ARGS...: the same question to both servers.
compare() {
	local title=$1
	shift
	printf -- '--- %s\n    $ kdig %s\n' "$title" "$*"
	echo "  zone data says (knotd without the module):"
	ask "$PLAIN_PORT" "$@"
	echo "  mxfilter serves (knotd with mod-mxfilter):"
	ask "$FILTER_PORT" "$@"
	echo
}

section "mxfilter demo"
echo "knotd:     $(knotd --version | head -n 1)"
echo "module:    $MODULE"
echo "zone:      $ZONE (configs/demo.zone)"
echo "plain:     knotd on 127.0.0.1@$PLAIN_PORT, no module"
echo "filtered:  knotd on 127.0.0.1@$FILTER_PORT, configs/demo.conf"
echo "work dir:  $DIR (removed on exit)"
if [ -n "$INSTALLED" ]; then
	echo "installed: $INSTALLED (hidden from both servers: private mount namespace)"
fi

start_knotd "$DIR/plain" "$PLAIN_PORT"
start_knotd "$DIR/filtered" "$FILTER_PORT"
echo "policy:    (the module's first log line)"
grep -h "mod-mxfilter" "$DIR/filtered/knotd.log" | sed 's/^/    /' || true

section "Same questions, both servers"
compare "Apex MX: two legacy exchanges (bypass 5, fallback 40)" MX "$ZONE"
compare "Subdomain with its own legacy MX and in-zone address" MX "shop.$ZONE"
compare "MX through an in-zone CNAME" MX "orders.$ZONE"
compare "Wildcard MX" MX "paris.branch.$ZONE"
compare "ANY at a name holding only MX, over TCP" +tcp ANY "shop.$ZONE"
compare "Compliant MX: passes untouched" MX "news.$ZONE"
compare "Null MX (RFC 7505): kept with null-mx: keep" MX "noreply.$ZONE"
compare "Not MX: untouched" A "mailgate.$ZONE"

section "What a customer sees with nslookup"
echo "    \$ nslookup -type=MX -port=$FILTER_PORT $ZONE 127.0.0.1"
nslookup -type=MX -port="$FILTER_PORT" -timeout=2 -retry=1 "$ZONE" 127.0.0.1 |
	sed -e '/^$/d' -e 's/^/    /'

section "Counters (knotc -f zone-stats $ZONE mod-mxfilter)"
knotc -f -s "$DIR/filtered/run/knot.sock" zone-stats "$ZONE" mod-mxfilter |
	sed 's/^/    /'

section "Audit trail (the module's lines in the server log)"
grep -h "mod-mxfilter" "$DIR/filtered/knotd.log" | sed 's/^/    /' || true

section "Stopping"
knotc -s "$DIR/plain/run/knot.sock" stop | sed 's/^/    plain:    /'
knotc -s "$DIR/filtered/run/knot.sock" stop | sed 's/^/    filtered: /'
for pid in "${PIDS[@]}"; do
	wait "$pid" || true
done
PIDS=()
echo "    done"
