#!/usr/bin/env bash
# Installs the Debian packages emotalk3d needs and that are missing: espeak-ng (speech for the
# synthetic data and the examples), chromium (the viewer's browser tests drive /usr/bin/chromium
# headless through Playwright; no browser is downloaded), firefox-esr with Mesa's software
# OpenGL/EGL (the Firefox test drives /usr/bin/firefox-esr through puppeteer-core) and Node.js
# with npm (the viewer's web
# client is built by `make web`; only installed when `node`/`npm` are absent, so a newer Node.js
# already on the machine is kept). Idempotent; uses sudo when not root.
set -euo pipefail

need=()
ldconfig -p 2>/dev/null | grep -q 'libespeak-ng\.so' || need+=(libespeak-ng1 espeak-ng-data)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/firefox-esr ] || need+=(firefox-esr)
for pkg in libgl1-mesa-dri libegl-mesa0; do  # software WebGL2 for headless Firefox
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "error: need root (or sudo) to apt-get install ${need[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
