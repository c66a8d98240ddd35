"""Assets, one module per stage. ``definitions.py`` loads every module of this package."""
