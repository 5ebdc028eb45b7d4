#!/usr/bin/env bash
# Set up a virtual environment with rtwhisper, its tests' tools and the offline model packs.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,docs]"
