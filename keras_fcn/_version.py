"""The package version (read by setup.py and written into exported sidecars)."""

__version__ = "0.2.0"
