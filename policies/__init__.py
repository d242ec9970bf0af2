"""Pure access decisions: no I/O, no clock reads, no imports from `gateway`."""
