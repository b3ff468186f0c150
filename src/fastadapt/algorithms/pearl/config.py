"""PEARL's config section (``pearl:``): the training tasks, data collection, the SAC learner and
the context encoder.

Defaults are the reference settings of Rakelly et al. 2019 (oyster ``configs/default.py`` and
``cheetah-vel.json``); collection is counted in episodes (the reference counts steps in whole
episodes: at horizon 200, 400 prior steps are 2 episodes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from fastadapt.config import AlgorithmConfig, PolicyConfig
from fastadapt.errors import require, require_at_least_one

Critic = Literal["v_net", "twin_q"]
"""``v_net``: twin Q-functions regressed on ``r + gamma V_target(s', z)`` and a state-value
network ``V(s, z)`` with a Polyak-averaged target copy (Haarnoja et al. 2018a, PEARL's oyster);
``twin_q``: twin Q-functions with Polyak-averaged target copies regressed on
``r + gamma (min_j Q'_j(s', a', z) - alpha log pi(a' | s', z))``, no V network (Haarnoja et al.
2018b)."""


@dataclass(frozen=True)
class PEARLConfig(AlgorithmConfig):
    """PEARL (Rakelly et al. 2019): SAC on ``(s, z)`` with a permutation-invariant posterior
    ``q(z | c)`` over a latent task variable, trained off-policy from per-task replay buffers.

    ``tasks_per_iteration`` is the number of training tasks whose data are collected in an
    iteration (the reference's ``num_tasks_sample``, 5).
    """

    section: ClassVar[str] = "pearl"
    tasks_per_iteration: int = 5
    train_tasks: int = 100
    """The fixed set of training tasks, drawn once from the family (``n_train_tasks``); each
    has its own replay buffer and encoder buffer."""
    tasks_per_step: int = 16
    """Training tasks in each gradient step, drawn with replacement (``meta_batch``)."""
    initial_episodes: int = 10
    """Episodes collected on every training task before the first gradient step, ``z`` from
    the prior (``num_initial_steps`` 2,000 at horizon 200)."""
    prior_episodes: int = 2
    """Episodes per collected task and iteration with ``z`` drawn from the prior for each
    (``num_steps_prior`` 400); they go to both buffers."""
    posterior_episodes: int = 0
    """Episodes per collected task and iteration with ``z`` from the posterior of a context
    drawn from the task's encoder buffer, re-inferred after each episode (the first from the
    prior; ``num_steps_posterior``); they go to both buffers."""
    extra_posterior_episodes: int = 3
    """Episodes collected like ``posterior_episodes`` that go to the replay buffer only, so
    the policy learns to act on posterior samples while the encoder is fitted to
    prior-collected data (``num_extra_rl_steps_posterior`` 600)."""
    gradient_steps: int = 2000
    """Gradient steps per iteration (``num_train_steps_per_itr``)."""
    batch_transitions: int = 256
    """Transitions per task in the RL batch of a gradient step (``batch_size``)."""
    context_transitions: int = 100
    """Transitions per task in the context batch the posterior is inferred from
    (``embedding_batch_size``: 100 for cheetah-vel, 256 for the direction and goal tasks)."""
    latent_dim: int = 5
    """Size of the latent task variable ``z``."""
    hidden_sizes: tuple[int, ...] = (300, 300, 300)
    """Units per ReLU layer of the policy, Q and V networks (``net_size``)."""
    encoder_hidden_sizes: tuple[int, ...] = (200, 200, 200)
    """Units per ReLU layer of the context encoder."""
    learning_rate: float = 3e-4
    """Adam step size of every network (the reference's policy, Q, V and context rates)."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target networks (``soft_target_tau``)."""
    reward_scale: float = 5.0
    """Rewards are multiplied by this in the Bellman targets only (with ``alpha`` 1 it sets
    the weight of the entropy; the context and logged returns are unscaled)."""
    kl_weight: float = 0.1
    """``beta``: weight of ``KL(q(z | c) || N(0, I))``, summed over the meta-batch's tasks
    (``kl_lambda``; 1.0 for sparse rewards and ant-goal)."""
    critic: Critic = "v_net"
    """The critic: the reference's V-network variant or twin target Qs, see :data:`Critic`."""
    alpha: float = 1.0
    """Entropy weight (fixed; the initial weight when ``auto_entropy``)."""
    auto_entropy: bool = False
    """Tune ``alpha`` so the policy's entropy tracks ``target_entropy`` (Haarnoja et al.
    2018b); the reference keeps ``alpha`` 1 and scales the rewards."""
    target_entropy: float | None = None
    """Entropy target of ``auto_entropy``; ``None``: ``-A`` (minus the action size)."""
    policy_mean_reg: float = 1e-3
    """Weight of the mean of the squared pre-squash action means in the policy loss."""
    policy_std_reg: float = 1e-3
    """Weight of the mean of the squared ``log sigma`` in the policy loss."""
    dense_critic_rewards: bool = False
    """The replay buffer (the critic's data) stores the family's dense rewards while the
    encoder buffer and the meta-test's context keep its sparse ones, as the reference does
    with ``sparse_rewards`` (families that report them: ``SparsePointRobot``)."""
    next_obs_in_context: bool = False
    """Transitions in the context hold ``(s, a, r, s')`` instead of ``(s, a, r)``."""
    buffer_transitions: int = 1_000_000
    """Transitions each task's replay buffer (and encoder buffer) holds; the oldest are
    overwritten (``replay_buffer_size``). Storage grows with the data, up to this bound."""
    exploration_episodes: int = 2
    """Meta-test episodes, each with a fresh ``z`` from the prior, before the posterior of
    everything gathered on the task is used (``num_exp_traj_eval``)."""
    deterministic_eval: bool = True
    """Meta-test with the policy's mean action (the reference's ``eval_deterministic``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least_one(self, ("train_tasks", "tasks_per_step", "initial_episodes",
                                    "gradient_steps", "batch_transitions", "context_transitions",
                                    "latent_dim", "buffer_transitions"))
        require(self.tasks_per_iteration <= self.train_tasks, "tasks_per_iteration",
                f"must be <= train_tasks ({self.train_tasks}), got {self.tasks_per_iteration}")
        for key in ("prior_episodes", "posterior_episodes", "extra_posterior_episodes",
                    "exploration_episodes"):
            require(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        require(self.prior_episodes + self.posterior_episodes >= 1, "prior_episodes",
                "plus posterior_episodes must be >= 1 (the encoder buffer needs data)")
        for key in ("hidden_sizes", "encoder_hidden_sizes"):
            sizes = getattr(self, key)
            require(len(sizes) >= 1 and all(s >= 1 for s in sizes), key,
                    f"must be one or more positive sizes, got {list(sizes)}")
        for key in ("learning_rate", "reward_scale", "alpha"):
            require(getattr(self, key) > 0, key, f"must be > 0, got {getattr(self, key)}")
        require(self.kl_weight >= 0, "kl_weight", f"must be >= 0, got {self.kl_weight}")
        require(0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma}")
        require(0 < self.tau <= 1, "tau", f"must be in (0, 1], got {self.tau}")
        require(self.policy_mean_reg >= 0 and self.policy_std_reg >= 0, "policy_mean_reg",
                "and policy_std_reg must be >= 0")
        for key in ("batch_transitions", "context_transitions"):
            require(getattr(self, key) <= self.buffer_transitions, key,
                    f"({getattr(self, key)}) is larger than a task's buffer can hold "
                    f"(buffer_transitions {self.buffer_transitions})")

    def network_widths(self, policy: PolicyConfig) -> dict[str, tuple[int, ...]]:
        """The actor-critic's and the context encoder's hidden layers."""
        return {"pearl.hidden_sizes": self.hidden_sizes,
                "pearl.encoder_hidden_sizes": self.encoder_hidden_sizes}

    def tasks_held(self) -> tuple[str, int]:
        """Every training task, each with its replay buffers, from the start."""
        return "pearl.train_tasks", self.train_tasks
