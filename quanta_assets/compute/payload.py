"""The program a Slurm job runs: ``python -m quanta_assets.compute.payload``.

It opens Dagster Pipes from the environment the Dagster step gave ``sbatch`` (context and message
files in the shared cache), reads ``stage`` and ``params`` from the Pipes extras, runs the stage
(which writes its outputs atomically into the cache), streams its log lines back, and reports the
stage's metadata plus the host and process id as the asset's materialization. A Python error is
reported back (``error`` custom message, then Pipes' own exception report) and exits non-zero, so
Slurm records the job as FAILED. SIGTERM (``scancel``, the time limit) raises ``SystemExit`` so the
stage's atomic writes remove their temporary files. Imports only ``dagster_pipes`` (no Dagster).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import traceback

from dagster_pipes import PipesContext, open_dagster_pipes

from quanta_assets.compute.stage_ref import run_stage


def _exit_on_sigterm(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def run(pipes: PipesContext) -> None:
    """Run the stage named in the Pipes extras and report its materialization."""
    stage, params = pipes.get_extra("stage"), pipes.get_extra("params")
    pipes.log.info(f"stage {stage} on {socket.gethostname()} (pid {os.getpid()}, "
                   f"Slurm job {os.environ.get('SLURM_JOB_ID', '?')})")
    started = time.monotonic()
    try:
        metadata = run_stage(stage, params, pipes.log.info)
    except BaseException as e:
        pipes.report_custom_message({"error": "".join(traceback.format_exception_only(e)).strip()})
        raise
    metadata = {**metadata, "stage_seconds": time.monotonic() - started, "compute_host": socket.gethostname(),
                "compute_pid": os.getpid()}
    pipes.report_asset_materialization(metadata=metadata)


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if "DAGSTER_PIPES_CONTEXT" not in os.environ:
        print("quanta_assets.compute.payload: not started by Dagster Pipes (DAGSTER_PIPES_CONTEXT unset)",
              file=sys.stderr)
        return 2
    with open_dagster_pipes() as pipes:
        run(pipes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
