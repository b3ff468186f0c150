"""Optional fast CPU paths, each checked against the reference path it replaces:
:mod:`.products` (exact MLP products for the MAML family's updates), :mod:`.sampling_forward`
(the sampler's prepared forward) and :mod:`.process_setup` (threads and the allocator
setting)."""
