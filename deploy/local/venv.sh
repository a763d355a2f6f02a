#!/usr/bin/env bash
# Prints the python of a virtual environment built from a requirements file, making or
# refreshing it first when the requirements changed. `make` targets that need Python tools
# (the contract tests, the Helm chart check) call it; the environments live under target/.
#   usage: deploy/local/venv.sh NAME REQUIREMENTS_FILE
set -euo pipefail
cd "$(dirname "$0")/../.."

name=${1:?usage: venv.sh NAME REQUIREMENTS_FILE}
requirements=${2:?usage: venv.sh NAME REQUIREMENTS_FILE}
dir="target/venv/$name"
stamp="$dir/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)

say() { printf 'venv: %s\n' "$*" >&2; }

if [ ! -x "$dir/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python=$(command -v python3 || true)
    [ -n "$python" ] || { say "python3 is not installed: install Debian's python3 and python3-venv"; exit 1; }
    if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            say "installing python3-venv from Debian packages"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        else
            say "python3 cannot make virtual environments: install Debian's python3-venv"
            exit 1
        fi
    fi
    say "preparing $dir from $requirements"
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
    echo "$want" > "$stamp"
fi
echo "$dir/bin/python"
