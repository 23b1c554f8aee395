"""The rules, pure: values, parsing and validation, planning, fates, send time, collapse and pending-pool rules, the
window arithmetic. No AWS, no I/O; the in-process stores here are what tests and local runs use."""
