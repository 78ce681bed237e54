"""Official checkpoints -> rvos state dicts, one module per method, strict: every key used, none missing."""
