"""Reference players for the bandit and tabular-MDP families (Gittins, UCB1, Thompson
sampling, PSRL, ...): the baselines meta-RL results are compared with."""
