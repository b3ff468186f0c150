"""The MAML family: the inner loop (:mod:`.adapt`, the only ``torch.func`` inner loop),
meta-gradient estimators, curvature products, and the outer steps of MAML-TRPO, MAML-VPG,
MAML-PPO, ProMP and Meta-SGD (:mod:`.algorithm`)."""
