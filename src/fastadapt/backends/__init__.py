"""Optional fast paths, each checked against the reference path it replaces
(:mod:`.fast_cpu`: MLP products, the sampler's prepared forward, the allocator setting)."""
