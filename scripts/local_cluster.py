#!/usr/bin/env python3
"""A private, single-host test cluster: Slurm (two nodes with one fake GPU each) and Redis.

Everything binds to 127.0.0.1 and lives under one directory: a munge daemon on a private socket,
MariaDB (slurmdbd's database), slurmdbd, slurmctld, two ``slurmd`` (nodes ``n1``, ``n2`` on
separate ports, each with ``gres/gpu:1`` backed by a character device made with ``mknod … c 1 3``)
and, on request, ``redis-server`` without persistence. Needs root (Slurm's daemons run as root
here) and the Debian packages of ``scripts/install-cluster-deps.sh``. Not for production: a real
cluster is the one the standard ``SLURM_CONF`` names.

    python scripts/local_cluster.py start /tmp/quanta-cluster   # prints the environment to use
    python scripts/local_cluster.py stop /tmp/quanta-cluster

From Python (the test fixtures, the benchmark): ``LocalCluster(root).start()`` … ``.stop()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

NODES = ("n1", "n2")
NODE_CPUS = 2
NODE_MEMORY_MB = 3000
SLURM_PROGRAMS = ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "munged", "mungekey", "mariadbd")


def missing_programs(slurm: bool = True, redis: bool = False) -> list[str]:
    """Programs of the cluster that are not on PATH (``scripts/install-cluster-deps.sh`` installs them)."""
    names = (list(SLURM_PROGRAMS) if slurm else []) + (["redis-server"] if redis else [])
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [name for name in names if shutil.which(name, path=path) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, what: str, timeout: float, log: Path | None = None) -> None:
    """Wait (test harness only) until ``condition()`` is true, else fail naming ``what`` and the log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s\n{tail}")


class LocalCluster:
    """A private Slurm cluster (and optionally Redis) under ``root``; see the module docstring."""

    def __init__(self, root: str | os.PathLike, redis: bool = False, min_job_age: int = 4):
        """``min_job_age``: Slurm's ``MinJobAge`` (s a finished job stays in the controller). ``sbatch
        --wait`` polls the controller every 2 s, growing ×4 up to 32 s while under ``MinJobAge / 2``:
        4 keeps it at 2 s (fast tests); Slurm's default is 300."""
        self.root = Path(root).resolve()
        self.with_redis = redis
        self.min_job_age = min_job_age
        self.etc, self.log, self.run = self.root / "etc", self.root / "log", self.root / "run"
        self.munge_socket = self.run / "munge.socket"
        self.ports_file = self.root / "ports.json"
        self.pids_file = self.root / "pids.json"
        self.procs: dict[str, int] = {}

    # -- the environment a client needs ------------------------------------------------------
    @property
    def slurm_conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Variables for clients: ``SLURM_CONF`` and (with Redis) ``QUANTA_CELERY_BROKER``."""
        env = {"SLURM_CONF": str(self.slurm_conf)}
        if self.with_redis:
            env["QUANTA_CELERY_BROKER"] = f"redis://127.0.0.1:{self.ports['redis']}/0"
        return env

    @property
    def ports(self) -> dict[str, int]:
        return json.loads(self.ports_file.read_text())

    # -- start / stop ------------------------------------------------------------------------
    def start(self, slurm: bool = True) -> LocalCluster:
        """Write the configuration and start every daemon (``slurm=False``: Redis only); returns once
        both nodes are idle."""
        missing = missing_programs(slurm, self.with_redis)
        if missing:
            raise RuntimeError(f"missing programs {missing}: run scripts/install-cluster-deps.sh")
        for d in (self.etc, self.log, self.run, self.root / "state", self.root / "spool"):
            d.mkdir(parents=True, exist_ok=True)
        ports = {k: free_port() for k in ("mariadb", "slurmdbd", "slurmctld", "n1", "n2", "redis")}
        self.ports_file.write_text(json.dumps(ports))
        if slurm:
            self._start_munge()
            self._start_mariadb()
            self._write_slurm_conf()
            self._start_slurm()
        if self.with_redis:
            self._start_redis()
        return self

    def stop(self) -> None:
        """Stop every daemon this cluster started (by the process ids it recorded)."""
        pids = json.loads(self.pids_file.read_text()) if self.pids_file.exists() else {}
        for name in reversed(list(pids)):
            _terminate(pids[name])
        self.pids_file.unlink(missing_ok=True)

    # -- node failure, for tests ---------------------------------------------------------------
    def kill_node(self, node: str) -> None:
        """Simulate a node dying: SIGKILL its ``slurmd``, every ``slurmstepd`` of its jobs and their tasks."""
        jobs = self._jobs_on(node)
        _terminate(self._pids()[f"slurmd-{node}"], sig=signal.SIGKILL)
        for pid in _pids_of_jobs(jobs):
            _kill(pid, signal.SIGKILL)

    def start_node(self, node: str) -> None:
        """(Re)start ``slurmd`` of ``node`` (a DOWN node returns to service: ``ReturnToService=2``)."""
        self._spawn(f"slurmd-{node}", ["slurmd", "-D", "-N", node], self.log / f"slurmd-{node}.out")

    def _jobs_on(self, node: str) -> list[str]:
        out = self.client(["squeue", "-h", "-w", node, "-o", "%A"]).stdout
        return out.split()

    # -- commands ------------------------------------------------------------------------------
    def client(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        """Run a Slurm client command (``sinfo``, ``squeue``, ``sacct`` …) against this cluster."""
        env = {**os.environ, **self.env}
        return subprocess.run(args, env=env, capture_output=True, text=True, check=check, timeout=60)

    # -- internals -----------------------------------------------------------------------------
    def _pids(self) -> dict[str, int]:
        return json.loads(self.pids_file.read_text()) if self.pids_file.exists() else {}

    def _spawn(self, name: str, args: list[str], out: Path, env: dict | None = None) -> int:
        env = {**os.environ, **self.env, **(env or {})}
        with open(out, "ab") as f:
            proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    stdin=subprocess.DEVNULL)
        pids = self._pids()
        pids[name] = proc.pid
        self.pids_file.write_text(json.dumps(pids))
        return proc.pid

    def _start_munge(self) -> None:
        key = self.etc / "munge.key"
        if not key.exists():
            subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
        key.chmod(0o600)
        self.run.chmod(0o755)
        self._spawn("munged", ["munged", "-F", "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
                               f"--pid-file={self.run / 'munged.pid'}", f"--log-file={self.log / 'munged.log'}",
                               f"--seed-file={self.run / 'munged.seed'}"], self.log / "munged.out")
        _wait(self.munge_socket.exists, "munged", 20, self.log / "munged.log")

    def _start_mariadb(self) -> None:
        data = self.root / "mariadb"
        if not data.exists():
            subprocess.run(["mariadb-install-db", f"--datadir={data}", "--user=root", "--skip-test-db",
                            "--auth-root-authentication-method=socket"], check=True, capture_output=True)
        sock = self.run / "mariadb.sock"
        self._spawn("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}",
                                 f"--port={self.ports['mariadb']}", "--bind-address=127.0.0.1", "--user=root",
                                 f"--pid-file={self.run / 'mariadb.pid'}", "--innodb-buffer-pool-size=32M",
                                 "--skip-log-bin", f"--log-error={self.log / 'mariadb.log'}"],
                    self.log / "mariadb.out")
        _wait(sock.exists, "mariadbd", 60, self.log / "mariadb.log")
        sql = ("CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';"
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
        subprocess.run(["mariadb", f"--socket={sock}", "-uroot", "-e", sql], check=True, capture_output=True)

    def _write_slurm_conf(self) -> None:
        ports, host = self.ports, socket.gethostname()
        for node in NODES:
            gpu = self.root / f"gpu-{node}"
            if not gpu.exists():
                os.mknod(gpu, 0o666 | 0o020000, os.makedev(1, 3))  # a character device, as /dev/null
        (self.etc / "slurm.conf").write_text(_SLURM_CONF.format(root=self.root, host=host, socket=self.munge_socket,
                                                                 cpus=NODE_CPUS, mem=NODE_MEMORY_MB,
                                                                 min_job_age=self.min_job_age, **ports))
        (self.etc / "gres.conf").write_text("".join(f"NodeName={n} Name=gpu File={self.root}/gpu-{n}\n"
                                                    for n in NODES))
        dbd = self.etc / "slurmdbd.conf"
        dbd.write_text(_SLURMDBD_CONF.format(root=self.root, socket=self.munge_socket, **ports))
        dbd.chmod(0o600)

    def _start_slurm(self) -> None:
        self._spawn("slurmdbd", ["slurmdbd", "-D"], self.log / "slurmdbd.out")
        _wait(lambda: _listening(self.ports["slurmdbd"]), "slurmdbd", 60, self.log / "slurmdbd.log")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"], self.log / "slurmctld.out")
        _wait(lambda: self.client(["sinfo", "-h"], check=False).returncode == 0, "slurmctld", 60,
              self.log / "slurmctld.log")
        for node in NODES:
            self.start_node(node)
        _wait(self._nodes_idle, "the slurmd nodes", 60, self.log / "slurmctld.log")

    def _nodes_idle(self) -> bool:
        out = self.client(["sinfo", "-h", "-N", "-o", "%N %t"], check=False).stdout.split()
        states = dict(zip(out[::2], out[1::2]))
        return all(states.get(n) == "idle" for n in NODES)

    def _start_redis(self) -> None:
        port = self.ports["redis"]
        self._spawn("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                              "--appendonly", "no", "--dir", str(self.run), "--protected-mode", "yes"],
                    self.log / "redis.out")
        _wait(lambda: _listening(port), "redis-server", 20, self.log / "redis.out")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _terminate(pid: int, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Signal ``pid``; after ``grace`` seconds SIGKILL it; reap it if it is our child."""
    _kill(pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            if not Path(f"/proc/{pid}").exists():
                return
        time.sleep(0.05)
    _kill(pid, signal.SIGKILL)


def _pids_of_jobs(jobs: list[str]) -> list[int]:
    """Processes of the given job ids: their ``slurmstepd`` and every task with ``SLURM_JOB_ID`` set."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for job in jobs:
            if f"slurmstepd: [{job}." in cmdline or f"SLURM_JOB_ID={job}".encode() in environ:
                found.append(int(proc.name))
    return found


_SLURM_CONF = """\
# Written by scripts/local_cluster.py: a private test cluster under {root}
ClusterName=quantatest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={slurmctld}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={socket}
CredType=cred/munge
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=2
JobAcctGatherParams=OverMemoryKill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1400
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={slurmdbd}
AccountingStoragePass={socket}
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SlurmdTimeout=6
SlurmctldTimeout=30
ReturnToService=2
MinJobAge={min_job_age}
KillWait=5
InactiveLimit=0
SlurmdParameters=config_overrides
NodeName=n1 NodeAddr=127.0.0.1 NodeHostname={host} Port={n1} CPUs={cpus} RealMemory={mem} Gres=gpu:1 State=UNKNOWN
NodeName=n2 NodeAddr=127.0.0.1 NodeHostname={host} Port={n2} CPUs={cpus} RealMemory={mem} Gres=gpu:1 State=UNKNOWN
PartitionName=gpu Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
"""

_SLURMDBD_CONF = """\
AuthType=auth/munge
AuthInfo=socket={socket}
DbdAddr=127.0.0.1
DbdHost=localhost
CommunicationParameters=NoInAddrAny
DbdPort={slurmdbd}
SlurmUser=root
LogFile={root}/log/slurmdbd.log
PidFile={root}/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={mariadb}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
"""


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        return 2
    cluster = LocalCluster(argv[2], redis=True)
    if argv[1] == "start":
        started = time.monotonic()
        cluster.start()
        print(f"# started in {time.monotonic() - started:.1f} s; logs in {cluster.log}", file=sys.stderr)
        for key, value in cluster.env.items():
            print(f"export {key}={value}")
    else:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
