"""The guide's entry point, `python realtime_server.py`, as rtwhisper's server (options pass through)."""

import sys

from rtwhisper.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", "--host", "0.0.0.0", "--port", "8765", *sys.argv[1:]]))
