"""Declarative automation conditions, written on the analysis assets themselves.

They are evaluated by the sensor ``quanta_automation`` (:mod:`quanta_assets.schedules`), off by
default: with it on, a campaign that lands new ``pile_losses`` gets similarity → clusters →
report (and the per-model analyses) by itself.
"""

from __future__ import annotations

import dagster as dg


def follow_upstream() -> dg.AutomationCondition:
    """Like ``AutomationCondition.eager()``, but a dependency only counts as updated when its
    *data version* changed: re-materializing an upstream partition that produces the same data
    (same code, settings and inputs) does not re-run anything downstream.

    Requests a partition when it newly became missing or a dependency's data version changed
    since it was last requested/updated, no dependency is missing or in progress, and every
    blocking asset check of the dependencies passed (a wrong upstream result does not propagate).
    """
    cond = dg.AutomationCondition
    return (
        (cond.newly_missing() | cond.any_deps_match(cond.data_version_changed())).since_last_handled()
        & ~cond.any_deps_missing()
        & ~cond.any_deps_in_progress()
        & cond.all_deps_blocking_checks_passed()
        & ~cond.in_progress()
    ).with_label("follow upstream data")


def follow_upstream_aggregate() -> dg.AutomationCondition:
    """For assets that aggregate many upstream partitions (e.g. every step of a model): like
    :func:`follow_upstream`, but instead of "no dependency partition missing" (never true while a
    campaign covers only some steps) every dependency needs at least one materialized partition;
    it waits until no dependency partition is in progress, so a campaign's stream of new
    checkpoints triggers one run, not one per checkpoint."""
    cond = dg.AutomationCondition
    return (
        (cond.newly_missing() | cond.any_deps_match(cond.data_version_changed())).since_last_handled()
        & cond.all_deps_match(~cond.missing())
        & ~cond.any_deps_in_progress()
        & cond.all_deps_blocking_checks_passed()
        & ~cond.in_progress()
    ).with_label("follow upstream data (aggregate)")
