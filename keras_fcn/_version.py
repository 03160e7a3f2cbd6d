"""The package version (read by setup.py and written into exported sidecars)."""

__version__ = "0.1.0"
