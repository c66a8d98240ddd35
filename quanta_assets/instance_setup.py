"""Prepare a Dagster instance before its first run: ``python -m quanta_assets.instance_setup``.

Run by ``make ui`` / ``make demo`` and once per deployment (docs/operations.md, "Pools from the first
run"). It writes the limit of each of our pools (``gpu``) into the instance's storage, from
``concurrency.pools.default_limit`` of its ``dagster.yaml`` (still marked as the default, so a later
change of ``default_limit`` applies), unless the pool already has a limit.

Why (Dagster 1.13.27): the queued-run daemon reads the instance's pool keys *before* it writes the
default limit of a pool seen for the first time, and in that same pass treats a pool without a key
as unlimited; so on a fresh instance the first pass starts every queued run of the pool (up to
``max_concurrent_runs``) and the limit holds only from the second. A limit that exists before the
first pass closes the gap. Idempotent; safe on a running deployment.
"""

from __future__ import annotations

import sys

import dagster as dg

from quanta_assets.compute.executors import GPU_POOL

POOLS = (GPU_POOL,)


def prepare_pools(instance: dg.DagsterInstance, pools: tuple[str, ...] = POOLS) -> dict[str, int | None]:
    """Give every pool in ``pools`` without a limit the instance's default limit; returns
    ``{pool: limit}`` (``None``: no default limit configured, the pool stays unlimited)."""
    storage = instance.event_log_storage
    existing = {limit.name: limit.limit for limit in storage.get_pool_limits()}
    default = instance.global_op_concurrency_default_limit
    for pool in pools:
        if pool not in existing and default is not None:
            storage.initialize_concurrency_limit_to_default(pool)
    return {limit.name: limit.limit for limit in storage.get_pool_limits() if limit.name in pools} | \
        {pool: None for pool in pools if pool not in existing and default is None}


def main() -> int:
    with dg.DagsterInstance.get() as instance:
        for pool, limit in prepare_pools(instance).items():
            print(f"pool {pool}: " + (f"limit {limit}" if limit is not None else
                                      "no limit (dagster.yaml sets no concurrency.pools.default_limit)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
