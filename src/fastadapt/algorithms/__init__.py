"""Meta-RL algorithms: the interface (:mod:`.base`), the registry (:mod:`.registry`), and one
folder per family: :mod:`.maml` (meta-optimisation), :mod:`.rl2` (a recurrent learner),
:mod:`.pearl` (off-policy task inference), :mod:`.transfer` (pretrain and fine-tune), with what
they share in :mod:`.common`. :mod:`.toolkit` is the stable import path of the building blocks
a plugin algorithm uses."""
