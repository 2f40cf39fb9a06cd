"""The package version (a base module: ``vmgga.__version__`` without importing the API)."""

__version__ = "0.1.0"
