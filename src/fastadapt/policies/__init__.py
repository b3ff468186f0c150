"""Policies: MLP (Gaussian, categorical) and recurrent (GRU, LSTM) modules that map inputs to
distribution parameters, the distributions as pure functions of those, and the module called
with explicit parameters (:mod:`.functional`)."""
