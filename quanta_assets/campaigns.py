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
from pathlib import Path
from typing import Annotated, Literal

import pydantic
import yaml

from quanta_assets.partitions import checkpoint_key
from quanta_core.environment import env_value
from quanta_core.models.demo_training import DEMO_STEPS
from quanta_core.presets import DEMO_MODEL, MODELS
from quanta_core.steps import PYTHIA_STEPS, step_number

CAMPAIGNS_ENV = "QUANTA_CAMPAIGNS"
DEFAULT_ASSETS = ("model_checkpoint", "pile_losses")
DEFAULT_CRON = "*/15 * * * *"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
PositiveInt = Annotated[int, pydantic.Field(strict=True, gt=0)]


class StepRange(pydantic.BaseModel):
    """``{every: N, from: A, to: B}``: the Pythia steps in [A, B] that are multiples of N."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)
    every: PositiveInt
    lo: Annotated[int, pydantic.Field(strict=True, ge=0, alias="from")] = 0
    hi: Annotated[int, pydantic.Field(strict=True, ge=0, alias="to")] = 10**9

    def steps(self) -> tuple[str, ...]:
        numbers = {s: step_number(s) for s in PYTHIA_STEPS}
        steps = tuple(s for s, n in numbers.items() if self.lo <= n <= self.hi and n % self.every == 0)
        if not steps:
            raise ValueError(f"no Pythia step matches every {self.every} from {self.lo} to {self.hi}")
        return steps


def _resolve_steps(spec) -> tuple[str, ...]:
    if spec == "all":
        return tuple(PYTHIA_STEPS)
    if spec == "demo":
        return tuple(DEMO_STEPS)
    if isinstance(spec, dict):
        return StepRange.model_validate(spec).steps()
    if isinstance(spec, (list, tuple)) and spec:
        bad = [s for s in spec if s not in PYTHIA_STEPS]
        if bad:
            raise ValueError(f"not Pythia step names: {bad[:5]} (expected e.g. step0, step512, step143000)")
        return tuple(dict.fromkeys(spec))
    raise ValueError(f"steps must be all, demo, a non-empty list, or {{every: N, from: A, to: B}}; got {spec!r}")


class Campaign(pydantic.BaseModel):
    """Models × steps to backfill (validated; ``steps`` become Pythia step names)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, pydantic.Field(pattern=_NAME.pattern)]
    models: tuple[str, ...]
    steps: tuple[str, ...]
    assets: tuple[str, ...] = DEFAULT_ASSETS
    batch_size: PositiveInt = 4
    cron: str = DEFAULT_CRON
    order: Literal["model", "step"] = "model"
    max_attempts: PositiveInt = 2
    description: str = ""
    source: str = pydantic.Field(default="built-in", exclude=True)

    @pydantic.field_validator("models", "assets", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, str) else value

    @pydantic.field_validator("models")
    @classmethod
    def _known_models(cls, models: tuple[str, ...]) -> tuple[str, ...]:
        bad = [m for m in models if m not in MODELS]
        if bad:
            raise ValueError(f"unknown models {bad} (known: {DEMO_MODEL}, pythia-70m, pythia-160m-deduped, …)")
        if not models:
            raise ValueError("models must be a non-empty list")
        return tuple(dict.fromkeys(models))

    @pydantic.field_validator("assets")
    @classmethod
    def _some_assets(cls, assets: tuple[str, ...]) -> tuple[str, ...]:
        if not assets:
            raise ValueError("assets must be a non-empty list of asset keys")
        return assets

    @pydantic.field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, spec) -> tuple[str, ...]:
        return _resolve_steps(spec)

    @pydantic.field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        if len(cron.split()) != 5:
            raise ValueError(f"cron must be a 5-field cron string, got {cron!r}")
        return cron

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


def _describe(error: pydantic.ValidationError) -> str:
    """One line per problem, naming the key (extra keys as 'unknown keys')."""
    unknown = sorted(str(e["loc"][0]) for e in error.errors() if e["type"] == "extra_forbidden")
    lines = [f"unknown keys {unknown} (allowed: {sorted(set(Campaign.model_fields) - {'source'})})"] if unknown else []
    for e in error.errors():
        if e["type"] != "extra_forbidden":
            where = ".".join(str(part) for part in e["loc"]) or "campaign"
            lines.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def campaign_from_dict(raw: dict, source: str = "built-in") -> Campaign:
    """Validate one campaign entry; errors name the file and the campaign."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: each campaign must be a mapping, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{source}: campaign name must be letters, digits, '-' or '_'; got {name!r}")
    if "source" in raw:
        raise ValueError(f"{source}: campaign {name!r}: unknown keys ['source']")
    try:
        return Campaign.model_validate({**raw, "source": source})
    except pydantic.ValidationError as e:
        raise ValueError(f"{source}: campaign {name!r}: {_describe(e)}") from None


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
    path = path or env_value(CAMPAIGNS_ENV)
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
