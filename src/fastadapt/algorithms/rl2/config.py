"""RL²'s config section: trials, returns, the recurrent policy and the PPO update (``ppo:``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from fastadapt.algorithms.common.ppo import PPOConfig
from fastadapt.config import AlgorithmConfig, PolicyConfig
from fastadapt.errors import require, require_at_least_one
from fastadapt.policies.recurrent import Cell


@dataclass(frozen=True)
class RL2Config(AlgorithmConfig):
    """Trials, returns and the recurrent policy of RL², and its PPO settings (``ppo:``)."""

    section: ClassVar[str] = "rl2"
    trials_per_task: int = 4
    """Trials ``B`` of each task per meta-iteration."""
    episodes_per_trial: int = 2
    """Episodes ``n`` of one task in a trial, hidden state kept between them (bandits: pulls,
    with ``env.kwargs.num_pulls: 1``)."""
    hidden_size: int = 64
    """Units of the recurrent cell."""
    cell: Cell = "gru"
    """The recurrent cell: ``gru`` (Duan et al. 2016), ``lstm`` (Wang et al. 2016; its
    additive cell state can keep counts) or ``relu_gru`` (the GRU with a ReLU candidate of
    Duan et al.'s final bandit runs; its unbounded state can count too), see
    :mod:`fastadapt.policies.recurrent`."""
    separate_value_gru: bool = False
    """Fit the values with a second recurrent trunk (``cell``, ``hidden_size`` units; the name
    is from when the GRU was the only cell) as Duan et al. 2016's separate RNN baseline,
    instead of a value head on the policy's trunk: the value loss's gradient then never
    reaches the policy's parameters (the update still clips all gradients by one global
    norm), at about twice the recurrent cost per step."""
    time_input: bool = False
    """Feed the recurrent trunk ``t / L``, the fraction of the trial's ``L`` steps already
    taken (Wang et al. 2016's time-step input; Duan et al. 2016 do not). ``L`` is the length
    of the trial being played, so an evaluation with another number of episodes per trial
    rescales it."""
    transition_input: bool = False
    """Feed the recurrent trunk the previous step's ``vec([1, s] (x) a) (x) [1, r]``: with
    one-hot states (tabular MDPs) or none (bandits), one slot per (state, action) pair holding
    1 and one holding the reward it paid, whose sums over the trial are the visit counts and
    reward totals a Bayes-optimal player needs (see :mod:`fastadapt.policies.recurrent`).
    Discrete actions only; ``2 (O + 1) A`` more inputs. Not in Duan et al. 2016."""
    gamma: float = 0.99
    """Discount across the whole trial."""
    gae_lambda: float = 0.95
    """GAE lambda across the whole trial."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this for the update (value targets and advantages) only;
    logged and evaluated returns are unscaled (rllab's ``scale_reward``)."""
    expected_rewards: bool = False
    """Compute advantages and value targets from each step's expected reward ``E[r | s, a]``
    under the training task instead of the sampled reward (families that report it:
    :attr:`~fastadapt.envs.base.BatchedEnv.expected_rewards`, bandits and tabular MDPs). The
    policy still reads the sampled reward, and logged returns are the sampled ones. The policy
    gradient stays unbiased: the reward noise at step ``t'`` is independent of the trial so
    far given ``(s, a)``, and every score ``grad log pi(a_t | h_t)``, ``t <= t'``, is a function
    of that trial, so replacing ``r_t'`` by its conditional mean leaves each term's expectation
    unchanged (Rao-Blackwellisation) and removes the reward noise from the advantages. Not in
    Duan et al. 2016: it uses the training task's parameters, known at meta-training only."""
    task_critic: bool = False
    """The value head also reads the training task's parameters (the numbers of
    ``task_to_dict``, what the oracle observes: bandit arm means, a tabular MDP's ``P`` and
    ``R``, a goal) through a hidden layer of ``hidden_size`` tanh units, ``V(h_t, task)``; the
    policy never reads them, so its actions at meta-test are unchanged. The action
    ``a_t ~ pi(. | h_t)`` is independent of the task given the history ``h_t``, so
    ``E[grad log pi(a_t | h_t) V(h_t, task)] = 0``: as a baseline it leaves the policy gradient
    unbiased at ``gae_lambda`` 1, and ``V^pi(h_t, task)``, the value of the hidden-task MDP's
    full state, makes GAE unbiased at every lambda; an inexact V biases GAE below 1 as any
    critic does. The critic keeps the history: a critic of the task (or state) alone is biased
    under partial observability (Baisero & Amato 2022, unbiased asymmetric actor-critic; the
    asymmetric actor-critic of Pinto et al. 2018; task information for the critic in meta-RL,
    Humplik et al. 2019). Not in Duan et al. 2016; families whose tasks are numbers only (not
    Meta-World)."""

    task_inference_coef: float = 0.0
    """Weight of an auxiliary task-inference loss (0: none): a linear belief head on the
    policy's trunk predicts the training task's parameters (the numbers ``task_critic``
    reads) at every step, by mean squared error, so the hidden state is pushed to carry the
    posterior mean of the task given the history, which for a bandit (the arm means'
    posterior means) is what an index policy like Gittins' reads. Nothing reads the head's
    output: the actions at meta-test are the policy's, from its history only. Humplik et al.
    2019 ("Meta reinforcement learning as task inference") supervise a belief network with
    the task at meta-training; auxiliary losses that shape a recurrent agent's state are
    Jaderberg et al. 2017's. Not in Duan et al. 2016; families whose tasks are numbers only
    (not Meta-World)."""

    ppo: PPOConfig = field(default_factory=PPOConfig)
    """The PPO update over whole trials."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least_one(self, ("trials_per_task", "episodes_per_trial", "hidden_size"))
        require(self.reward_scale > 0, "reward_scale", f"must be > 0, got {self.reward_scale}")
        require(0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma}")
        require(0 <= self.gae_lambda <= 1, "gae_lambda",
                f"must be in [0, 1], got {self.gae_lambda}")
        require(self.task_inference_coef >= 0, "task_inference_coef",
                f"must be >= 0, got {self.task_inference_coef}")

    def network_widths(self, policy: PolicyConfig) -> dict[str, tuple[int, ...]]:
        """The GRU's width (a lower bound of its ``3 h^2`` weights)."""
        return {"rl2.hidden_size": (self.hidden_size, self.hidden_size)}

    def episodes_held_per_task(self) -> int:
        """Every episode of every trial of a task."""
        return self.trials_per_task * self.episodes_per_trial
