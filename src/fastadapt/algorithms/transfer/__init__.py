"""Transfer baselines: pretrain + fine-tune, random init, oracle (:mod:`.algorithm`)."""
