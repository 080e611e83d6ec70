"""The package version (one place: bpfload/__init__.py and the CLI import it)."""
__version__ = "0.1.0"
