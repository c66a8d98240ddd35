"""End to end through the real UI stack: ``dagster dev -w workspace.yaml`` (webserver + daemon) on
127.0.0.1, a materialization launched through the webserver's GraphQL API, the materialization
event and its metadata read back through the API, and a headless-Chromium screenshot of the asset
graph kept under ``test-artifacts/``. Fails — never skips — when Chromium is missing."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.load(response)
    assert "errors" not in payload, payload["errors"]
    return payload["data"]


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    """URL of a running ``dagster dev`` on a scratch instance and cache; always shut down."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run `make sysdeps` (installs Debian's chromium)")
    root = tmp_path_factory.mktemp("e2e")
    home, cache = root / "dagster_home", root / "cache"
    home.mkdir()
    cache.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "QUANTA_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    env.pop("QUANTA_PILE", None)
    env.pop("QUANTA_CAMPAIGNS", None)
    port = _free_port()
    log = open(root / "dagster-dev.log", "w")  # noqa: SIM115 (open for the server's lifetime, closed below)
    dagster = str(Path(sys.executable).with_name("dagster"))
    process = subprocess.Popen(
        [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                tail = (root / "dagster-dev.log").read_text()[-4000:]
                raise RuntimeError(f"dagster dev exited ({process.returncode}):\n{tail}")
            try:
                data = _graphql(url, "{ workspaceOrError { ... on Workspace { locationEntries { name "
                                     "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["locationOrLoadError"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                tail = (root / "dagster-dev.log").read_text()[-4000:]
                raise RuntimeError(f"dagster dev did not answer within 180 s:\n{tail}")
            time.sleep(1)
        assert entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation", entries
        yield url
    finally:
        # Ctrl-C is how dagster dev shuts down its webserver, daemon and code server; then make sure
        try:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever of the group is left
        process.wait(timeout=10)
        log.close()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(root / "dagster-dev.log", ARTIFACTS / "dagster-dev.log")


LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}"""

RUN = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"

MATERIALIZATION = """
query($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        partition
        metadataEntries {
          label
          ... on PathMetadataEntry { path }
          ... on IntMetadataEntry { intValue }
          ... on BoolMetadataEntry { boolValue }
        }
      }
      definition { description opVersion groupName }
    }
  }
}"""


def test_launch_through_graphql_and_screenshot_the_asset_graph(dagster_dev):
    url = dagster_dev
    data = _graphql(url, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
    repo = data["repositoriesOrError"]["nodes"][0]
    params = {
        "selector": {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"],
                     "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["pile_canonical"]}]},
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "quanta/test", "value": "e2e"}]},
    }
    launched = _graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    deadline, status = time.monotonic() + 240, None
    while time.monotonic() < deadline:
        status = _graphql(url, RUN, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS", f"run {run_id} ended {status} (see test-artifacts/dagster-dev.log)"

    asset = _graphql(url, MATERIALIZATION, {"path": ["pile_canonical"]})["assetOrError"]
    (event,) = asset["assetMaterializations"]
    assert event["runId"] == run_id
    metadata = {e["label"]: e for e in event["metadataEntries"]}
    assert Path(metadata["path"]["path"]).is_dir()
    assert metadata["documents"]["intValue"] > 0 and metadata["tokens"]["intValue"] > metadata["documents"]["intValue"]
    assert metadata["embedded_minipile"]["boolValue"] is True
    assert asset["definition"]["description"] and asset["definition"]["opVersion"]

    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "asset-graph.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            # the lineage of the report, every upstream asset expanded inside its group
            page.goto(f"{url}/assets/quanta_report?view=lineage&lineageScope=upstream&lineageDepth=10",
                      wait_until="networkidle", timeout=90_000)
            with contextlib.suppress(PlaywrightTimeout):  # the first visit may greet with a dialog
                page.get_by_role("button", name="Skip").click(timeout=5_000)
            try:
                for name in ("pile_canonical", "pile_losses", "quanta_similarity", "quanta_clusters"):
                    page.get_by_text(name, exact=True).first.wait_for(timeout=120_000)  # graph nodes
            finally:
                page.wait_for_timeout(2_000)  # let the graph layout settle
                page.screenshot(path=str(shot), full_page=True)  # kept on failure too, to see why
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
