"""A real Dagster deployment for the cluster tests: ``dagster dev`` (webserver, daemon with the run
queue, code server) on 127.0.0.1 over a fresh SQLite ``DAGSTER_HOME`` (migrated first, since
several processes share it), driven through GraphQL as the UI drives it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}

DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 8
  pools:
    granularity: run
    default_limit: 4
"""

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
REEXECUTE = """
mutation($params: ReexecutionParams!) { launchRunReexecution(reexecutionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(home: Path, cache: Path, extra: dict) -> dict:
    """The environment of every Dagster process of a test deployment."""
    return {**os.environ, "DAGSTER_HOME": str(home), "QUANTA_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            **extra}


def new_instance_home(home: Path, dagster_yaml: str = DAGSTER_YAML, prepare: bool = True) -> None:
    """A fresh ``DAGSTER_HOME`` with the run queue and pools, migrated before anyone shares it and
    prepared as docs/operations.md says (``python -m quanta_assets.instance_setup``: the pool limits)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(dagster_yaml)
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    subprocess.run([BIN / "dagster", "instance", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    if prepare:
        subprocess.run([sys.executable, "-m", "quanta_assets.instance_setup"], env=env, check=True,
                       capture_output=True, timeout=300)


class Deployment:
    """``dagster dev -m support.cluster_location`` with the given environment; see the module docstring."""

    def __init__(self, root: Path, env: dict, dagster_yaml: str = DAGSTER_YAML, prepare: bool = True):
        self.home, self.cache = root / "dagster_home", root / "cache"
        self.cache.mkdir(parents=True, exist_ok=True)
        new_instance_home(self.home, dagster_yaml, prepare)
        self.env = base_env(self.home, self.cache, env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.log = root / "dagster-dev.log"
        self.proc = None

    def start(self, timeout: float = 300) -> Deployment:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([BIN / "dagster", "dev", "-m", "support.cluster_location", "-h", "127.0.0.1",
                                          "-p", str(self.port)], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.cache, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.graphql("{ repositoriesOrError { __typename } }")["repositoriesOrError"]["__typename"] \
                        == "RepositoryConnection":
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(1)
        raise RuntimeError(f"dagster dev did not come up: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group: dagster dev and its children
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    @property
    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    # -- GraphQL, as the UI ---------------------------------------------------------------------
    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.port)

    def submit(self, partition: str, config: dict | None = None, compute: dict | None = None) -> str:
        """Launch ``tiny_job`` for one partition (through the run queue); returns the run id."""
        run_config = {"ops": {"tiny_losses": {"config": config or {}}},
                      "resources": {"compute": {"config": compute or {}}}}
        return self.client().submit_job_execution("tiny_job", run_config=run_config,
                                                  tags={"dagster/partition": partition})

    def backfill(self, partitions: list[str]) -> str:
        params = {"partitionNames": partitions,
                  "assetSelection": [{"path": ["tiny_tokens"]}, {"path": ["tiny_losses"]}]}
        result = self.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        return result["backfillId"]

    def reexecute_from_failure(self, run_id: str) -> str:
        result = self.graphql(REEXECUTE, {"params": {"parentRunId": run_id, "strategy": "FROM_FAILURE"}})
        result = result["launchRunReexecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def terminate(self, run_id: str) -> None:
        self.client().terminate_run(run_id)

    def set_pool_limit(self, pool: str, limit: int) -> None:
        subprocess.run([BIN / "dagster", "instance", "concurrency", "set", pool, str(limit)], env=self.env,
                       check=True, capture_output=True, timeout=120)

    # -- waiting and reading results (test side) ------------------------------------------------
    def backfill_runs(self, backfill_id: str, count: int, timeout: float) -> list[dg.DagsterRun]:
        """The backfill's runs once ``count`` of them have finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            if len(runs) == count and all(r.status in FINISHED for r in runs):
                return runs
            time.sleep(2)
        raise TimeoutError(f"backfill {backfill_id}: not {count} finished runs after {timeout} s")

    def wait(self, run_id: str, timeout: float) -> dg.DagsterRun:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.status in FINISHED:
                return run
            time.sleep(1)
        raise TimeoutError(f"run {run_id} not finished after {timeout} s")

    def materialization(self, run_id: str, asset: str) -> dict:
        """Metadata values of ``asset``'s materialization in ``run_id``."""
        for entry in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            mat = entry.asset_materialization
            if mat.asset_key == dg.AssetKey(asset):
                return {key: getattr(value, "value", value) for key, value in mat.metadata.items()}
        raise AssertionError(f"no materialization of {asset} in run {run_id}")

    def failure_text(self, run_id: str) -> str:
        """Everything the step failures of ``run_id`` say (description, error, cause)."""
        texts = []
        for entry in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            data = entry.dagster_event.step_failure_data
            if data.user_failure_data is not None:
                texts.append(data.user_failure_data.description or "")
            if data.error is not None:
                texts.append(data.error.to_string())
        return "\n".join(texts)
