"""A slower CPU, summoned: one busy process per core beside what is measured.

rtwhisper's rules were once tuned on one fast CPU and missed their targets on a CPU that
decodes at half the speed (2 AVX2 cores against 2 AVX-512 ones). To see how a configuration
behaves on such a machine without having one, :class:`BusyCores` starts one process per core
that spins for as long as it runs: the kernel's fair scheduler then gives the measured server
about half of each core, as a CPU of half the speed would (and, unlike a cgroup quota, in slices
of milliseconds, not in 100 ms bursts that a slower CPU does not have). The numerics are this
machine's own: int8 kernels that round differently on another instruction set are not emulated.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import TracebackType

from ..engine.layout import available_cores

SPIN = "while True: pass"


class BusyCores:
    """Context manager: ``cores`` processes (default: one per core this process may use) spinning.

    They run at the same priority as everything else, so each of the measured program's threads
    competes with one of them for its core.
    """

    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores if cores is not None else available_cores()
        self._processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BusyCores:
        self._processes = [subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
                           for _ in range(self.cores)]
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for process in self._processes:
            process.kill()
        for process in self._processes:
            process.wait()
        self._processes = []

    @property
    def running(self) -> int:
        """How many of the busy processes are alive."""
        return sum(p.poll() is None for p in self._processes)
