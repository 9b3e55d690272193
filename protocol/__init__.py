"""The bridge <-> board wire protocol, sans I/O: bytes in, events out. See ``protocol/SPEC.md``."""
