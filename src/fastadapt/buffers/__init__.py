"""Buffers of experience: per-task replay buffers for off-policy learners
(:mod:`.replay`)."""
