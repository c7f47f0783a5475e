"""Job kinds built on the studio's own engine (diagnose, curate); each runs as ``python -m``."""
