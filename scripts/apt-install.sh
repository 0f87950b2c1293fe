#!/usr/bin/env bash
# Installs Debian packages quietly, with sudo unless already root: `scripts/apt-install.sh PKG...`.
# Used by scripts/setup.sh and bench/setup.sh for what they find missing.
set -euo pipefail
[ $# -gt 0 ] || exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
