#!/usr/bin/env bash
# Sets up chDB (current ClickHouse as an in-process library) for the SQL
# checks of internal/sqlcheck: `npm pack` of @chdb/lib-linux-x64-gnu (about
# 170 MB download, 560 MB unpacked) into a cache directory, and chdb-run, a
# small C program over libchdb.so's C API (see chdb-run.c for why not the
# package's Node binding). Idempotent: a second run downloads nothing.
#
#   scripts/chdb/setup.sh        prints the directory holding chdb-run
#
# Environment: CHDB_HOME (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/auditlog/chdb-<version>). The Go tests find
# chdb-run through AUDITLOG_CHDB_DIR, defaulting to the same directory.
# Needs: npm, a C compiler (cc), tar.
set -euo pipefail

CHDB_VERSION=26.5.3 # @chdb/lib-linux-x64-gnu; its engine reports 26.5.1.1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CHDB_HOME=${CHDB_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/auditlog/chdb-$CHDB_VERSION}

die() { echo "chdb setup: $*" >&2; exit 1; }

mkdir -p "$CHDB_HOME"
if [[ ! -f $CHDB_HOME/package/libchdb.so ]]; then
	command -v npm >/dev/null || die "npm not found: apt-get install -y npm"
	tmp=$(mktemp -d "$CHDB_HOME/.pack.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	echo "chdb setup: npm pack @chdb/lib-linux-x64-gnu@$CHDB_VERSION (about 170 MB)" >&2
	(cd "$tmp" && npm pack --silent "@chdb/lib-linux-x64-gnu@$CHDB_VERSION" >/dev/null)
	tar -xzf "$tmp"/chdb-lib-linux-x64-gnu-"$CHDB_VERSION".tgz -C "$tmp"
	rm -rf "$CHDB_HOME/package"
	# Moved into place last, so an interrupted run leaves no half package.
	mv "$tmp/package" "$CHDB_HOME/package"
fi

src=$ROOT/scripts/chdb/chdb-run.c
if [[ ! -x $CHDB_HOME/chdb-run || $src -nt $CHDB_HOME/chdb-run ]]; then
	command -v cc >/dev/null || die "no C compiler: apt-get install -y gcc"
	cc -O2 -Wall -o "$CHDB_HOME/chdb-run.tmp" "$src" \
		-L"$CHDB_HOME/package" -lchdb -Wl,-rpath,"$CHDB_HOME/package"
	mv "$CHDB_HOME/chdb-run.tmp" "$CHDB_HOME/chdb-run"
fi

# A smoke test: the engine loads and answers.
smoke=$(mktemp -d)
printf 'SELECT version()' | "$CHDB_HOME/chdb-run" "$smoke" TSV >/dev/null ||
	die "chdb-run does not run; see the error above"
rm -rf "$smoke"
echo "$CHDB_HOME"
