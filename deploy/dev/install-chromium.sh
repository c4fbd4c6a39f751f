#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
# Installed with apt-get when missing; needs root, as on the CI machines.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
	exit 0
fi
if [ "$(id -u)" != "0" ]; then
	echo "The browser tests need Debian's chromium: run 'apt-get install chromium' as root." >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends chromium >/dev/null \
	|| { apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null && apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends chromium >/dev/null; }
/usr/bin/chromium --version
