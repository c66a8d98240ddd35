"""The benchmark's stage (no Dagster import, so a Slurm job loads it fast): sleep ``seconds``,
report when it started and ended (Unix time, s)."""

import time


def sleep_stage(params: dict, log) -> dict:
    started = time.time()
    time.sleep(float(params["seconds"]))
    return {"started_at": started, "ended_at": time.time()}
