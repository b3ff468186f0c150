"""Transfer baselines: pretrain + fine-tune, random init, oracle (:mod:`.algorithm`), and
their ``finetune:`` section (:mod:`.config`)."""
