"""avsync: put a singer's video in sync with a reference music track by watching the lips."""

__version__ = "0.1.0"
