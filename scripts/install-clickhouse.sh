#!/usr/bin/env bash
# Installs the ClickHouse server and client that the tests run against
# (Debian's clickhouse 18.16 packages), unless they are already installed.
# Safe to run again. The package cannot start the service here (no systemd);
# it does not need to: internal/testharness starts its own servers.
set -euo pipefail

# clickhouse-server lives in /usr/sbin, which is not on every user's PATH.
have_server() {
	command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ]
}

if ! have_server || ! command -v clickhouse-client >/dev/null 2>&1; then
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		sudo="sudo"
	fi
	$sudo apt-get update
	# noninteractive: the server package would otherwise ask for a password.
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y clickhouse-server clickhouse-client
fi

# clickhouse-server 18.16 has no --version; the client comes from the same
# source package and reports the same version.
clickhouse-client --version
