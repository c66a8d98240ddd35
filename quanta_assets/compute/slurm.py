"""A stage as a Slurm job: Dagster Pipes through files in the shared cache, ``sbatch --wait``.

The Dagster step opens a Pipes session whose context and message files lie in a fresh directory
under ``<cache>/.pipes/``, submits ``python -m quanta_assets.compute.payload`` with ``sbatch
--wait`` (Slurm waits; the step's thread blocks on it) and streams the job's log lines into the
step's log as they arrive. Afterwards Slurm's controller (``scontrol``; ``sacct`` once it has
forgotten the job) gives the job's state, node and times. Interrupting the step (the run is
terminated) cancels the job with ``scancel``. A job that did not end COMPLETED fails the step with
Slurm's state, the Python error and the tail of the job's stderr. The Pipes directory is removed in
every case; the job's stdout/stderr stay in ``<cache>/.slurm-logs/`` (logs, read by no asset).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import dagster as dg

PAYLOAD_MODULE = "quanta_assets.compute.payload"
STDERR_TAIL_CHARS = 3000


LAUNCHERS = ("sbatch", "srun")


@dataclass(frozen=True)
class SlurmJobSpec:
    """What to ask Slurm for (``None``: the cluster's default). ``time_limit`` in Slurm's format
    (``"30"`` minutes, ``"4:00:00"``); ``memory`` as ``--mem`` (``"32G"``). ``launcher``:
    ``sbatch`` (``sbatch --wait``: a batch job, which outlives a lost Dagster host; ``sbatch``
    notices the end by polling every 2, 8, then 32 s, capped by half the cluster's ``MinJobAge``)
    or ``srun`` (told of the end at once; needs the nodes to reach the Dagster host, as an
    interactive ``srun`` from a login node does)."""

    python: str
    launcher: str = "sbatch"
    partition: str | None = None
    account: str | None = None
    gpus: int = 1
    cpus: int | None = None
    memory: str | None = None
    time_limit: str | None = None
    extra_args: tuple[str, ...] = ()

    def command(self, name: str, logs: Path) -> list[str]:
        """The ``sbatch --wait`` (or ``srun``) command line for job ``name``, logs in ``logs/<name>.{out,err}``."""
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"Slurm launcher {self.launcher!r} is not one of {', '.join(LAUNCHERS)}")
        payload = [self.python, "-m", PAYLOAD_MODULE]
        first = ["sbatch", "--wait", "--parsable", "--no-requeue"] if self.launcher == "sbatch" else ["srun"]
        cmd = [*first, f"--job-name={name}", f"--output={logs / name}.out", f"--error={logs / name}.err"]
        options = {"partition": self.partition, "account": self.account, "cpus-per-task": self.cpus,
                   "mem": self.memory, "time": self.time_limit}
        cmd += [f"--{key}={value}" for key, value in options.items() if value is not None]
        if self.gpus:
            cmd.append(f"--gres=gpu:{self.gpus}")
        cmd += list(self.extra_args)
        if self.launcher == "srun":
            return [*cmd, *payload]
        return [*cmd, "--wrap", "exec " + shlex.join(payload)]


@dataclass
class SlurmJobInfo:
    """Slurm's record of a finished job (from ``scontrol show job`` or ``sacct``)."""

    job_id: str
    state: str = "UNKNOWN"
    exit_code: str = ""
    node: str = ""
    reason: str = ""
    submit: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    tres: str = ""
    raw: dict = field(default_factory=dict)

    def metadata(self) -> dict:
        """Dagster metadata: job id, state, node, queue wait and run time (s), allocated TRES."""
        out = {"slurm_job_id": self.job_id, "slurm_state": self.state, "slurm_node": self.node,
               "slurm_tres": self.tres}
        if self.submit and self.start:
            out["slurm_queue_wait_s"] = dg.MetadataValue.float((self.start - self.submit).total_seconds())
        if self.start and self.end:
            out["slurm_run_time_s"] = dg.MetadataValue.float((self.end - self.start).total_seconds())
        return out


def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:  # "Unknown", "None"
        return None


ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
                 "SIGNALING", "STAGE_OUT", "STOPPED", "UNKNOWN"}
ACCOUNTING_SETTLE_S = 60


def job_info(job_id: str) -> SlurmJobInfo:
    """Slurm's final record of ``job_id``, once ``sbatch --wait`` has returned.

    The controller's (``scontrol``) when final; while it still shows COMPLETING (processes being
    killed after a time limit) or has forgotten the job (after ``MinJobAge``), accounting's
    (``sacct``), which holds the base state (TIMEOUT, NODE_FAIL …) from the job's end; accounting
    is given up to ``ACCOUNTING_SETTLE_S`` s to record it.
    """
    info = _scontrol_info(job_id)
    if info is not None and info.state not in ACTIVE_STATES:
        return info
    deadline = time.monotonic() + ACCOUNTING_SETTLE_S
    while True:
        info = _sacct_info(job_id)
        if info.state not in ACTIVE_STATES or time.monotonic() > deadline:
            return info
        time.sleep(1)


def _scontrol_info(job_id: str) -> SlurmJobInfo | None:
    proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], check=False, capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    f = dict(item.split("=", 1) for item in shlex.split(proc.stdout) if "=" in item)
    return SlurmJobInfo(job_id, f.get("JobState", "UNKNOWN"), f.get("ExitCode", ""),
                        f.get("BatchHost") or f.get("NodeList", ""), f.get("Reason", ""),
                        _time(f.get("SubmitTime")), _time(f.get("StartTime")), _time(f.get("EndTime")),
                        f.get("AllocTRES") or f.get("TRES", ""), f)


def _sacct_info(job_id: str) -> SlurmJobInfo:
    columns = ["State", "ExitCode", "NodeList", "Reason", "Submit", "Start", "End", "AllocTRES"]
    proc = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", ",".join(columns)],
                          check=False, capture_output=True, text=True, timeout=60)
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not rows:
        return SlurmJobInfo(job_id, reason=f"neither scontrol nor sacct know job {job_id}: {proc.stderr.strip()}")
    f = dict(zip(columns, rows[0]))
    return SlurmJobInfo(job_id, f["State"].split()[0], f["ExitCode"], f["NodeList"], f["Reason"],
                        _time(f["Submit"]), _time(f["Start"]), _time(f["End"]), f["AllocTRES"], f)


def cancel(job_id: str | None, name: str) -> None:
    """``scancel`` the job (by id when known, else by its unique name)."""
    target = [job_id] if job_id else [f"--name={name}"]
    subprocess.run(["scancel", *target], check=False, capture_output=True, text=True, timeout=60)


def _job_id_by_name(name: str) -> str | None:
    """The id of the (unique) job ``name``: the controller's (``squeue``, while it still holds the job),
    else accounting's (``sacct``), which may take a moment to record a job that just ended."""
    deadline = time.monotonic() + ACCOUNTING_SETTLE_S
    while True:
        for cmd in (["squeue", "-h", "-t", "all", f"--name={name}", "-o", "%A"],
                    ["sacct", "-X", "-n", "-P", f"--name={name}", "--starttime=now-7days", "-o", "JobID"]):
            ids = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60).stdout.split()
            if ids:
                return ids[-1]
        if time.monotonic() > deadline:
            return None
        time.sleep(1)


def submit_and_wait(cmd: list[str], env: dict, name: str, log) -> tuple[str, int, str]:
    """Run ``sbatch --wait`` (or ``srun``); returns (job id, its exit code, its stderr). Cancels the
    job if interrupted (the run was terminated) and re-raises."""
    if cmd[0] == "srun":  # a job of its own, even if the Dagster process runs inside an allocation
        env = {k: v for k, v in env.items() if k not in ("SLURM_JOB_ID", "SLURM_JOBID")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # a Ctrl-C/termination reaches us, not sbatch
    job_id = None
    try:
        if cmd[0] == "sbatch":
            job_id = proc.stdout.readline().strip().split(";")[0] or None
            log(f"submitted Slurm job {job_id} ({name})")
        else:
            log(f"submitted Slurm job {name} (srun)")
        out, err = proc.communicate()
        job_id = job_id or _job_id_by_name(name)
    except BaseException:
        log(f"interrupted: cancelling Slurm job {job_id or name}")
        cancel(job_id, name)
        proc.kill()
        proc.wait()
        raise
    if not job_id:
        raise dg.Failure(f"{cmd[0]} did not submit the job (exit {proc.returncode}): {err.strip() or out.strip()}")
    return job_id, proc.returncode, err


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-STDERR_TAIL_CHARS:]
    except OSError as e:
        return f"(no stderr file: {e})"


def run_as_slurm_job(context, spec: SlurmJobSpec, stage: str, params: dict, pipes_root: Path) -> dg.MaterializeResult:
    """Run ``stage(params)`` as a Slurm job through Dagster Pipes; see the module docstring."""
    name = f"quanta-{stage.rsplit(':', 1)[-1]}-{uuid.uuid4().hex[:12]}"
    pipes_dir, logs = pipes_root / ".pipes" / name, pipes_root / ".slurm-logs"
    pipes_dir.mkdir(parents=True)
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        with dg.open_pipes_session(
            context=context, extras={"stage": stage, "params": params},
            context_injector=dg.PipesFileContextInjector(str(pipes_dir / "context.json")),
            message_reader=dg.PipesFileMessageReader(str(pipes_dir / "messages.jsonl")),
        ) as session:
            env = {**os.environ, **session.get_bootstrap_env_vars()}
            job_id, code, sbatch_err = submit_and_wait(spec.command(name, logs), env, name, context.log.info)
            info = job_info(job_id)
            if code != 0 or info.state != "COMPLETED":
                raise _failure(info, code, session.get_custom_messages(), logs / f"{name}.err", sbatch_err)
            wall = dg.MetadataValue.float(time.monotonic() - started)  # submit → results in hand
            extra = {**info.metadata(), "slurm_wall_s": wall, "compute_backend": "slurm"}
            results = session.get_results(metadata=extra)
    finally:
        shutil.rmtree(pipes_dir, ignore_errors=True)
    materializations = [r for r in results if isinstance(r, dg.MaterializeResult)]
    if len(materializations) != 1:
        raise dg.Failure(f"Slurm job {job_id}: expected one materialization, got {len(materializations)}")
    return materializations[0]


def _failure(info: SlurmJobInfo, code: int, messages, stderr: Path, sbatch_err: str) -> dg.Failure:
    errors = [m["error"] for m in messages if isinstance(m, dict) and "error" in m]
    lines = [f"Slurm job {info.job_id} ended {info.state} (exit code {info.exit_code or code}) "
             f"on {info.node or '?'}" + (f", reason {info.reason}" if info.reason not in ("", "None") else "")]
    if errors:
        lines.append(f"Python error: {errors[-1]}")
    if sbatch_err.strip():
        lines.append(f"sbatch: {sbatch_err.strip()[-500:]}")
    lines.append(f"--- tail of {stderr} ---\n{_tail(stderr)}")
    return dg.Failure(description="\n".join(lines), metadata=info.metadata())
