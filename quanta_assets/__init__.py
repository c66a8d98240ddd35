"""quanta_assets: the Dagster layer (assets, partitions, resources, IO manager, checks,
schedules) wired around :mod:`quanta_core`. Load with ``dagster dev -w workspace.yaml``."""
