#!/usr/bin/env bash
# Install the Debian packages the cluster tests (tests/e2e/test_slurm*.py, test_celery*.py) and
# benchmarks/bench_slurm.py need: Slurm 22.05 (controller, node daemon, accounting daemon, client
# commands), munge (Slurm's authentication), MariaDB (slurmdbd's database) and Redis (the Celery
# broker). Installs only; nothing is configured or started system-wide: the tests start private
# instances bound to 127.0.0.1 under a temporary directory (scripts/local_cluster.py). Idempotent;
# needs root or sudo.
set -euo pipefail
need=()
command -v slurmctld >/dev/null 2>&1 || need+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || need+=(slurmd)
command -v slurmdbd >/dev/null 2>&1 || need+=(slurmdbd)
command -v sbatch >/dev/null 2>&1 || need+=(slurm-client)
[ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/accounting_storage_mysql.so ] || \
  ls /usr/lib/*/slurm-wlm/accounting_storage_mysql.so >/dev/null 2>&1 || need+=(slurm-wlm-mysql-plugin)
command -v munged >/dev/null 2>&1 || need+=(munge)
command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing cluster test packages: ${need[*]}"
$SUDO apt-get update -qq
# policy-rc.d 101: the packages' init scripts must not start system-wide daemons (the tests run
# private ones); restored afterwards.
policy=/usr/sbin/policy-rc.d
had_policy=0
if [ -e "$policy" ]; then had_policy=1; else printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null; $SUDO chmod +x "$policy"; fi
trap '[ "$had_policy" = 1 ] || $SUDO rm -f "$policy"' EXIT
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
