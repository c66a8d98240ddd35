"""A step process dies with its run worker: no orphan can write a file or an event afterwards.

Dagster's multiprocess executor runs each step in a child of the run worker. If the run worker dies
(``kill -9``, an OOM kill), the run is marked failed at once, but a child would live on, re-parented
to PID 1, and later write its outputs and log events into the failed run. :func:`die_with_run_worker`
asks Linux to SIGKILL the step process the moment its parent dies (``prctl(PR_SET_PDEATHSIG)``), and
exits at once if the parent is already gone. Called when the ``compute`` resource is set up, i.e. in
every step that runs a GPU stage; a no-op in the run worker itself (the in-process executor, ``make
demo``) and off Linux.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_run_worker() -> bool:
    """Tie this step process's life to its parent's; ``True`` if set, ``False`` where it does not apply."""
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent.pid:  # the run worker died before the signal was armed
        os._exit(128 + signal.SIGKILL)
    return True
