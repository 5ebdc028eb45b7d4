"""Run the rtwhisper benchmarks (the same as `rtwhisper bench`).

    python benchmarks/run.py ../shared/audio --out benchmarks/results/latest
"""

from rtwhisper.cli import main

if __name__ == "__main__":
    import sys

    raise SystemExit(main(["bench", *sys.argv[1:]]))
