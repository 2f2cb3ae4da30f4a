"""pmd-service: the Post Management Dashboard backend."""

__version__ = "0.1.0"
