"""Multi-user storage: a REAL PostgreSQL server (Debian's packages) behind dagster-postgres.yaml.

Starts ``postgres`` from ``/usr/lib/postgresql/<v>/bin`` in a temp dir on a free localhost port
(as the ``postgres`` user when we are root), loads ``dagster-postgres.yaml`` as the instance,
runs a materialization and two ticks of a campaign schedule through Dagster's scheduler, then
reads the runs, the materialization event and the schedule ticks straight from PostgreSQL with
psycopg2. Fails — never skips — when PostgreSQL is not installed (``make sysdeps``).
"""

import datetime
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

PASSWORD = "quanta-test-pw"
REPO = Path(__file__).resolve().parents[2]


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: run `make sysdeps` "
                    "(scripts/install-system-deps.sh installs Debian's postgresql)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run as the ``postgres`` system user then."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], timeout: int) -> None:
    done = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="module")
def postgres():
    """Environment variables (DAGSTER_PG_*) of a fresh server; stopped and removed afterwards."""
    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="quanta-pg-"))  # not under pytest's 0700 root-owned dirs
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        shutil.chown(pwfile, "postgres")
    port = _free_port()
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "dagster", "--pwfile", str(pwfile),
              "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"], timeout=120)
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
              "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off", "start"], timeout=90)
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="dagster", password=PASSWORD, dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE dagster")
        conn.close()
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_DB": "dagster",
               "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": PASSWORD}
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _query(env: dict, sql: str, args=()) -> list[tuple]:
    conn = psycopg2.connect(host=env["DAGSTER_PG_HOST"], port=int(env["DAGSTER_PG_PORT"]), dbname=env["DAGSTER_PG_DB"],
                            user=env["DAGSTER_PG_USER"], password=env["DAGSTER_PG_PASSWORD"])
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def test_materialization_and_schedule_ticks_are_stored_in_postgres(postgres, tmp_path, monkeypatch):
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._scheduler.scheduler import launch_scheduled_runs

    from support import toy_location

    for key, value in postgres.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster-postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"

    # 1. a materialization of one campaign partition
    defs = toy_location.defs
    corpus = dg.materialize(defs.assets, selection=["pile_canonical"], instance=instance, resources=defs.resources)
    assert corpus.success  # the campaign's runs need it
    done = str(dg.MultiPartitionKey({"model": "pythia-70m", "step": "step1000"}))
    result = dg.materialize(defs.assets, selection=["model_checkpoint", "pile_losses"], partition_key=done,
                            instance=instance, resources=defs.resources)
    assert result.success

    rows = _query(postgres, "SELECT run_id, status FROM runs WHERE run_id = %s", (result.run_id,))
    assert rows == [(result.run_id, "SUCCESS")]
    rows = _query(postgres, "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = "
                            "'ASSET_MATERIALIZATION' AND run_id = %s ORDER BY id", (result.run_id,))
    assert rows == [('["model_checkpoint"]', done), ('["pile_losses"]', done)]
    stored = _query(postgres, "SELECT event FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
                              "AND asset_key = %s AND run_id = %s", ('["pile_losses"]', result.run_id))[0][0]
    assert '"num_documents"' in stored  # the metadata is in the stored event

    # 2. the campaign schedule, switched on and ticked twice by Dagster's own scheduler loop
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(python_file=toy_location.__file__, attribute="defs",
                                                    working_directory=str(Path(toy_location.__file__).parent)),
        location_name="toy",
    )
    with create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as context:
        location = next(iter(context.create_request_context().get_code_location_entries().values()))
        assert location.code_location, location.load_error
        repo = next(iter(location.code_location.get_repositories().values()))
        schedule = repo.get_schedule(toy_location.TOY_CAMPAIGN.schedule_name)
        instance.start_schedule(schedule)
        started = datetime.datetime.now(datetime.UTC)
        for minutes in (2, 4):  # each call evaluates the cron ticks up to "now + minutes"
            list(launch_scheduled_runs(context, dg.get_dagster_logger(), started + datetime.timedelta(minutes=minutes),
                                       iteration_times={}, max_catchup_runs=1))

    ticks = _query(postgres, "SELECT status FROM job_ticks WHERE selector_id IS NOT NULL ORDER BY id")
    assert [t[0] for t in ticks] == ["SUCCESS", "SKIPPED"], ticks  # second tick: the two runs are still queued
    runs = _query(postgres, "SELECT r.run_id, r.status, t.value FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
                            "AND t.key = 'dagster/partition' WHERE r.run_id IN "
                            "(SELECT run_id FROM run_tags WHERE key = 'quanta/campaign' AND value = 'toy')")
    assert sorted(r[2] for r in runs) == [str(dg.MultiPartitionKey({"model": "pythia-70m", "step": s}))
                                          for s in ("step2000", "step3000")]
    assert {r[1] for r in runs} == {"QUEUED"}  # the queue waits for the daemon's run coordinator
    run_keys = _query(postgres, "SELECT value FROM run_tags WHERE key = 'dagster/run_key' ORDER BY value")
    assert [k[0] for k in run_keys] == [f"toy:{r}:try1" for r in sorted(r[2] for r in runs)]
    pool_tags = _query(postgres, "SELECT count(*) FROM run_tags WHERE key = 'quanta/pool' AND value = 'gpu'")
    assert pool_tags == [(2,)]
    instance.dispose()


def test_instance_setup_writes_the_gpu_pool_limit_into_postgres(postgres, tmp_path, monkeypatch):
    """The pool preparation of docs/operations.md on the PostgreSQL profile: the limit exists before
    any run, from ``default_limit``; run again, it keeps a limit an operator set."""
    from quanta_assets.instance_setup import prepare_pools

    for key, value in postgres.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster-postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert prepare_pools(instance) == {"gpu": 1}
        assert _query(postgres, "SELECT concurrency_key, \"limit\" FROM concurrency_limits") == [("gpu", 1)]
        instance.event_log_storage.set_concurrency_slots("gpu", 3)  # dagster instance concurrency set gpu 3
        assert prepare_pools(instance) == {"gpu": 3}
