"""shoal: a Cluster of Little Action Models."""

__version__ = "0.1.0"
