"""Media I/O: decoding and encoding with PyAV, background threads."""
