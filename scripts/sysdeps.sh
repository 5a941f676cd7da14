#!/usr/bin/env bash
# Installs the system packages the project needs (FluidSynth and the full General MIDI
# soundfont FluidR3_GM; Chromium for browser tests)
# when they are missing and we are root. Without root it only says what is missing.
set -euo pipefail
missing=()
command -v fluidsynth >/dev/null 2>&1 || missing+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || missing+=(fluid-soundfont-gm)
if [ "${DIFFBGM_SKIP_BROWSER:-0}" != "1" ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || true
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "warning: missing system packages (${missing[*]}); install them with your package manager" >&2
fi
