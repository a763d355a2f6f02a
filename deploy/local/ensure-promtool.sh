#!/usr/bin/env bash
# Makes sure `promtool` (Prometheus's rule checker and rule unit-test runner) is on the PATH.
# Installs Debian's `prometheus` package, which ships it, when missing and running as root;
# otherwise stops with one line saying what to install.
set -euo pipefail

say() { printf 'ensure-promtool: %s\n' "$*" >&2; }

command -v promtool >/dev/null 2>&1 && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "promtool is not installed: install Debian's 'prometheus' package (or put promtool on the PATH)"
    exit 1
fi
say "installing promtool from Debian's prometheus package"
export DEBIAN_FRONTEND=noninteractive
# The package's own service is not wanted: only its promtool. Keep it from starting on install.
policy=/usr/sbin/policy-rc.d
added_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added_policy=yes
fi
trap 'if [ -n "$added_policy" ]; then rm -f "$policy"; fi' EXIT
if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; then
    say "could not install Debian's 'prometheus' package; install it (it ships promtool) and run again"
    exit 1
fi
command -v promtool >/dev/null 2>&1 || { say "the prometheus package installed no promtool"; exit 1; }
