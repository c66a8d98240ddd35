"""What a campaign partition's runs need before they can succeed, and which failures still count.

* :func:`missing_upstream`: the unpartitioned assets upstream of the campaign assets (e.g.
  ``pile_canonical``, ``quanta_demo_suite``) never materialized on the instance; a tick requests no
  run for a partition that needs one, and names it in its skip reason, so no attempt is spent.
  ``quanta_demo_suite`` is needed by the demo model's partitions only (:data:`ONLY_FOR_MODEL`).
* :func:`counts_as_attempt`: a failed campaign run counts against ``max_attempts`` unless an
  unpartitioned upstream it needs was materialized after the run was created (the cause may be
  gone: the attempts are given back by themselves), or it carries the tag ``quanta/attempt_reset``
  (``python -m quanta_assets.campaign_reset <campaign>``).
"""

from __future__ import annotations

import dagster as dg

from quanta_core.presets import DEMO_MODEL

ONLY_FOR_MODEL = {"quanta_demo_suite": DEMO_MODEL}
"""Unpartitioned upstream assets that only the partitions of one model need."""
RESET_TAG = "quanta/attempt_reset"


def unpartitioned_upstream(asset_graph, assets: tuple[str, ...]) -> list[dg.AssetKey]:
    """The materializable, unpartitioned parents of ``assets`` outside ``assets``, by name."""
    ours = {dg.AssetKey.from_user_string(a) for a in assets}
    found = set()
    for key in ours:
        if not asset_graph.has(key):
            continue
        for parent in asset_graph.get(key).parent_keys:
            node = asset_graph.get(parent) if asset_graph.has(parent) else None
            if parent not in ours and node is not None and node.partitions_def is None and node.is_materializable:
                found.add(parent)
    return sorted(found, key=lambda k: k.to_user_string())


def needed_by(name: str, model: str) -> bool:
    return ONLY_FOR_MODEL.get(name, model) == model


def last_materialized(instance: dg.DagsterInstance, keys: list[dg.AssetKey]) -> dict[str, float | None]:
    """Asset name → timestamp (s) of its latest materialization, ``None`` when never."""
    out = {}
    for key in keys:
        event = instance.get_latest_materialization_event(key)
        out[key.to_user_string()] = event.timestamp if event is not None else None
    return out


def missing_upstream(upstream: dict[str, float | None], model: str) -> list[str]:
    """The never-materialized upstream assets that partitions of ``model`` need."""
    return [name for name, when in upstream.items() if when is None and needed_by(name, model)]


def counts_as_attempt(record: dg.RunRecord, upstream: dict[str, float | None], model: str) -> bool:
    """Whether a failed campaign run still counts against ``max_attempts`` (module docstring)."""
    if record.dagster_run.tags.get(RESET_TAG):
        return False
    created = record.create_timestamp.timestamp()
    return not any(when is not None and when > created and needed_by(name, model) for name, when in upstream.items())
