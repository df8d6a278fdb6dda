from avsync.cli import entry

entry()
