"""Campaigns: which Pythia checkpoints to backfill, as a setting.

A campaign is a set of models × a set of steps of the ``checkpoint_partitions`` grid, the assets
to materialize for each of those partitions, and how fast to go. The backfill schedule
(``quanta_assets.schedules``) works through a campaign a few partitions per tick.

Campaigns come from a YAML (or JSON — a subset of YAML) file named by ``$QUANTA_CAMPAIGNS``; when it
is unset the built-in examples below are used. A file replaces the built-in examples. Format::

    campaigns:
      - name: pythia-70m-all          # letters, digits, '-' and '_'
        models: [pythia-70m]
        steps: all                    # all 154 Pythia steps
      - name: pythia-scaling-10k
        models: [pythia-160m, pythia-410m, pythia-1b]
        steps: {every: 10000}         # step0, step10000, …, step140000 (optional from:/to:)
        batch_size: 2                 # at most 2 campaign runs queued or running at once
        cron: "*/10 * * * *"          # when the schedule ticks
      - name: demo
        models: [quanta-demo]
        steps: demo                   # the steps the embedded demo suite was trained to
        # or an explicit list: steps: [step1000, step143000]

Optional keys per campaign: ``assets`` (default ``[model_checkpoint, pile_losses]``; the
analysis assets downstream follow by declarative automation), ``batch_size`` (default 4),
``cron`` (default every 15 minutes), ``order`` (``model``: finish one model's steps before the
next — the default, so per-model assets can run early; ``step``: sweep all models step by step),
``max_attempts`` (default 2: a partition whose campaign runs failed this often is left for a
person to look at), ``description``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from quanta_assets.partitions import DEMO_MODEL, MODELS, PYTHIA_STEPS, checkpoint_key, step_number

CAMPAIGNS_ENV = "QUANTA_CAMPAIGNS"
DEFAULT_ASSETS = ("model_checkpoint", "pile_losses")
DEFAULT_CRON = "*/15 * * * *"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_KEYS = {"name", "models", "steps", "assets", "batch_size", "cron", "order", "max_attempts", "description"}


def demo_steps() -> list[str]:
    """The step names the embedded demo suite has checkpoints for (empty before it exists)."""
    try:
        from quanta_core.demo_suite import DEMO_STEPS
    except ImportError:
        return []
    return list(DEMO_STEPS)


@dataclass(frozen=True)
class Campaign:
    """Models × steps to backfill. ``steps`` are Pythia step names (``"step1000"``)."""

    name: str
    models: tuple[str, ...]
    steps: tuple[str, ...]
    assets: tuple[str, ...] = DEFAULT_ASSETS
    batch_size: int = 4
    cron: str = DEFAULT_CRON
    order: str = "model"
    max_attempts: int = 2
    description: str = ""
    source: str = field(default="built-in", compare=False)

    @property
    def schedule_name(self) -> str:
        """A Dagster-safe name: ``campaign_<name>`` with '-' → '_'."""
        return "campaign_" + self.name.replace("-", "_")

    def partition_keys(self) -> list[str]:
        """The campaign's ``checkpoint_partitions`` keys (``"<model>|<step>"``), in work order."""
        if self.order == "step":
            pairs = [(m, s) for s in self.steps for m in self.models]
        else:
            pairs = [(m, s) for m in self.models for s in self.steps]
        return [str(checkpoint_key(m, s)) for m, s in pairs]


def _resolve_steps(spec, where: str) -> tuple[str, ...]:
    if spec == "all":
        return tuple(PYTHIA_STEPS)
    if spec == "demo":
        return tuple(demo_steps())
    if isinstance(spec, dict):
        unknown = set(spec) - {"every", "from", "to"}
        if unknown or "every" not in spec:
            raise ValueError(f"{where}: steps must be all, demo, a list, or {{every: N, from: A, to: B}}; got {spec!r}")
        every, lo, hi = spec["every"], spec.get("from", 0), spec.get("to", 10**9)
        if not all(isinstance(v, int) and v >= 0 for v in (every, lo, hi)) or every == 0:
            raise ValueError(f"{where}: every/from/to must be non-negative integers (every > 0); got {spec!r}")
        steps = tuple(s for s in PYTHIA_STEPS if lo <= step_number(s) <= hi and step_number(s) % every == 0)
        if not steps:
            raise ValueError(f"{where}: no Pythia step matches {spec!r}")
        return steps
    if isinstance(spec, list) and spec:
        bad = [s for s in spec if s not in PYTHIA_STEPS]
        if bad:
            raise ValueError(f"{where}: not Pythia step names: {bad[:5]} (expected e.g. step0, step512, step143000)")
        return tuple(dict.fromkeys(spec))
    raise ValueError(f"{where}: steps must be all, demo, a non-empty list, or {{every: N}}; got {spec!r}")


def campaign_from_dict(raw: dict, source: str = "built-in") -> Campaign:
    """Validate one campaign entry; errors name the file and the campaign."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: each campaign must be a mapping, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{source}: campaign name must be letters, digits, '-' or '_'; got {name!r}")
    where = f"{source}: campaign {name!r}"
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_KEYS)})")
    models = raw.get("models")
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not models:
        raise ValueError(f"{where}: models must be a non-empty list")
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise ValueError(f"{where}: unknown models {bad} (known: {DEMO_MODEL}, pythia-70m, pythia-160m-deduped, …)")
    assets = raw.get("assets", list(DEFAULT_ASSETS))
    if isinstance(assets, str):
        assets = [assets]
    if not isinstance(assets, list) or not assets or not all(isinstance(a, str) for a in assets):
        raise ValueError(f"{where}: assets must be a non-empty list of asset keys")
    batch_size = raw.get("batch_size", 4)
    max_attempts = raw.get("max_attempts", 2)
    for label, value in (("batch_size", batch_size), ("max_attempts", max_attempts)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{where}: {label} must be a positive integer, got {value!r}")
    order = raw.get("order", "model")
    if order not in ("model", "step"):
        raise ValueError(f"{where}: order must be 'model' or 'step', got {order!r}")
    cron = raw.get("cron", DEFAULT_CRON)
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise ValueError(f"{where}: cron must be a 5-field cron string, got {cron!r}")
    return Campaign(
        name=name, models=tuple(dict.fromkeys(models)), steps=_resolve_steps(raw.get("steps"), where),
        assets=tuple(assets), batch_size=batch_size, cron=cron, order=order, max_attempts=max_attempts,
        description=str(raw.get("description", "")), source=source,
    )


BUILTIN_CAMPAIGNS: list[dict] = [
    {
        "name": "demo",
        "models": [DEMO_MODEL],
        "steps": "demo",
        "batch_size": 2,
        "cron": "* * * * *",
        "description": "Every checkpoint of the embedded demo suite (runs offline; a quick try-out).",
    },
    {
        "name": "pythia-70m-all",
        "models": ["pythia-70m"],
        "steps": "all",
        "description": "pythia-70m at all 154 published checkpoints (step0 … step143000).",
    },
    {
        "name": "pythia-scaling-10k",
        "models": ["pythia-160m", "pythia-410m", "pythia-1b"],
        "steps": {"every": 10000},
        "batch_size": 2,
        "description": "pythia-160m, -410m and -1b every 10,000 steps (step0, step10000, …, step140000).",
    },
]


def load_campaigns(path: str | os.PathLike | None = None) -> list[Campaign]:
    """Campaigns from ``path`` (else ``$QUANTA_CAMPAIGNS``; else the built-in examples)."""
    path = path or os.environ.get(CAMPAIGNS_ENV) or None
    if path is None:
        entries, source = BUILTIN_CAMPAIGNS, "built-in"
    else:
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"campaign file not found: {file} (from ${CAMPAIGNS_ENV} or the path given)")
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ValueError(f"{file}: not valid YAML/JSON: {e}") from e
        entries = data.get("campaigns") if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise ValueError(f"{file}: expected a list of campaigns (or a mapping with key 'campaigns')")
        source = str(file)
    campaigns = [campaign_from_dict(entry, source) for entry in entries]
    names = [c.schedule_name for c in campaigns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{source}: campaign names collide: {duplicates}")
    return campaigns
