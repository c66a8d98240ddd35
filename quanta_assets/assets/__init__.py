"""Assets, one module per stage. ``definitions.py`` lists their assets by hand (``ASSETS``): a new
module's assets count only once added there."""
