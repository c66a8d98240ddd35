"""A GPU stage's process dies with its run worker: after ``kill -9`` of the run worker nothing the run
started writes a file or an event (the step ran in a child process of a real multiprocess run)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by a PID 1 that does not reap, counts as dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_step_dies_with_its_run_worker_and_writes_nothing_after(tmp_path):
    home, output = tmp_path / "dagster_home", tmp_path / "cache" / "slow_gpu"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "ORPHAN_OUTPUT": str(output), "ORPHAN_SLEEP_S": "6",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    worker = subprocess.Popen([sys.executable, str(HERE / "orphan_location.py")], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid_file = Path(f"{output}.pid")
        _wait_for(lambda: pid_file.exists() or worker.poll() is not None, 180, "the step never started its stage")
        assert worker.poll() is None, "the run ended before its stage started"
        step = int(pid_file.read_text())
        assert Path(f"/proc/{step}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(worker.pid)
        killed_at = time.monotonic()
        worker.kill()  # kill -9 of the run worker alone
        worker.wait()
        _wait_for(lambda: not _alive(step), 5, f"step process {step} outlived its run worker")
        print(f"step gone {time.monotonic() - killed_at:.2f} s after the run worker")
        time.sleep(8)  # past the end of the stage's sleep: an orphan would write now
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    assert not Path(f"{output}.npy").exists()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        types = {e.dagster_event.event_type for e in instance.all_logs(run.run_id) if e.dagster_event}
    assert dg.DagsterEventType.STEP_SUCCESS not in types and dg.DagsterEventType.ASSET_MATERIALIZATION not in types
