"""RL² (Duan et al. 2016; Wang et al. 2016): a GRU policy meta-trained with PPO over trials.

One meta-iteration:

1. sample ``T`` training tasks and ``B`` trials of each (:mod:`fastadapt.sampling.trials`): ``n``
   episodes per trial with the hidden state kept between them;
2. GAE over each whole trial, the trial being the RL episode (Duan et al. 2016, §2.2), with
   the values the policy predicted while sampling (:func:`gae_skipping_masked`);
3. ``ppo.epochs`` passes of Adam over minibatches of whole trials
   (:func:`~fastadapt.meta.ppo.recurrent_ppo_loss`).

Meta-testing needs no gradient step: the policy adapts inside its hidden state, so the return
of the ``k``-th episode of a trial on a held-out task is the adaptation curve.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from fastadapt.errors import ConfigError, require_at_least_one
from fastadapt.meta.ppo import PPOConfig, TrialBatch, masked_mean, recurrent_ppo_loss
from fastadapt.policies.recurrent import Cell, RecurrentPolicy
from fastadapt.returns import gae_skipping_masked
from fastadapt.types import Params, Trials

_ADAM_PREFIX = "adam/"


@dataclass(frozen=True)
class RL2Config:
    """Trials and returns of RL² (the policy's size is ``hidden_size``)."""

    tasks_per_iteration: int = 20
    """Training tasks ``T`` sampled per meta-iteration."""
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

    def __post_init__(self) -> None:
        counts = ("tasks_per_iteration", "trials_per_task", "episodes_per_trial", "hidden_size")
        require_at_least_one(self, "rl2", counts)
        if self.reward_scale <= 0:
            raise ConfigError(f"rl2.reward_scale must be > 0, got {self.reward_scale}")
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ConfigError("rl2.gamma must be in (0, 1] and rl2.gae_lambda in [0, 1], got "
                              f"{self.gamma} and {self.gae_lambda}")
        if self.task_inference_coef < 0:
            raise ConfigError(f"rl2.task_inference_coef must be >= 0, got "
                              f"{self.task_inference_coef}")


def trial_batch(trials: Trials, config: RL2Config, normalize: bool) -> TrialBatch:
    """Flatten ``[T, B]`` into ``N`` trials and compute GAE advantages and value targets.

    Args:
        trials: ``[T, B, L, ...]`` from a sampler's ``sample_trials``.
        normalize: standardise the advantages over all unmasked steps.

    Returns:
        A :class:`TrialBatch` of ``N = T * B`` trials.
    """
    def flat(x: Tensor) -> Tensor:
        return x.flatten(0, 1)

    masks, values = flat(trials.masks), flat(trials.values)
    per_step = trials.expected_rewards if config.expected_rewards else trials.rewards
    if per_step is None:
        raise ConfigError("rl2.expected_rewards needs a family whose batched env reports "
                          "expected rewards (Bandit, TabularMDP); this one does not")
    rewards = flat(per_step) * config.reward_scale
    advantages = gae_skipping_masked(rewards, values, masks, config.gamma, config.gae_lambda)
    returns = (advantages + values) * masks
    if normalize:
        mean = masked_mean(advantages, masks)
        std = masked_mean((advantages - mean).pow(2), masks).sqrt()
        advantages = (advantages - mean) / (std + 1e-8) * masks
    features = None if trials.task_features is None else flat(trials.task_features)
    return TrialBatch(flat(trials.inputs), flat(trials.actions), masks, flat(trials.log_probs),
                      advantages, returns, features)


class RL2PPO:
    """The RL² update: PPO with Adam on whole trials. Owns the parameters and Adam's state.

    Args:
        policy: the recurrent policy.
        params: initial parameters (copied).
        config: trial settings. ppo: PPO settings.
        seed: seeds the generator that shuffles trials into minibatches.
    """

    def __init__(self, policy: RecurrentPolicy, params: Params, config: RL2Config,
                 ppo: PPOConfig, seed: int) -> None:
        self.policy, self.config, self.ppo = policy, config, ppo
        self.params = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
        self.optimizer = torch.optim.Adam(self.params.values(), lr=ppo.learning_rate, eps=1e-5)
        self.generator = torch.Generator().manual_seed(seed)

    def step(self, trials: Trials, fraction_done: float = 0.0) -> dict[str, float]:
        """``ppo.epochs`` passes over ``trials`` in ``ppo.minibatches`` minibatches.

        Args:
            trials: the iteration's trials.
            fraction_done: iterations done / ``run.iterations``; sets the step size when
                ``ppo.anneal_lr`` (:meth:`PPOConfig.learning_rate_at`) and the entropy weight
                when ``ppo.entropy_coef_final`` is set (:meth:`PPOConfig.entropy_coef_at`).

        Returns:
            Means over the minibatches of the loss terms, ``kl`` and ``clip_fraction`` of
            the last epoch, ``grad_norm``, ``learning_rate`` (the step size used),
            ``entropy_coef`` (the entropy weight used), and ``nonfinite`` (1.0 if any
            minibatch had a non-finite loss or gradient; such minibatches are skipped).
        """
        learning_rate = self.ppo.learning_rate_at(fraction_done)
        ppo = replace(self.ppo, entropy_coef=self.ppo.entropy_coef_at(fraction_done))
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        batch = trial_batch(trials, self.config, self.ppo.normalize_advantages)
        num_trials = batch.masks.shape[0]
        nonfinite, count = 0.0, 0
        totals: dict[str, float] = {}
        for _ in range(self.ppo.epochs):
            totals, count = {}, 0
            order = torch.randperm(num_trials, generator=self.generator)
            for index in order.chunk(min(self.ppo.minibatches, num_trials)):
                minibatch = batch.select(index)
                loss, metrics = recurrent_ppo_loss(self.policy, self.params, minibatch, ppo,
                                                   self.config.task_inference_coef)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                norm = torch.nn.utils.clip_grad_norm_(self.params.values(), self.ppo.max_grad_norm)
                if not (torch.isfinite(loss) and torch.isfinite(norm)):
                    nonfinite = 1.0
                    continue
                self.optimizer.step()
                metrics = {**metrics, "loss": loss.detach(), "grad_norm": norm}
                for key, value in metrics.items():
                    totals[key] = totals.get(key, 0.0) + float(value)
                count += 1
        result = {key: value / max(count, 1) for key, value in totals.items()}
        result.setdefault("kl", 0.0)
        return {**result, "learning_rate": learning_rate, "entropy_coef": ppo.entropy_coef,
                "nonfinite": nonfinite}

    def current_params(self) -> Params:
        """Detached copies of the parameters."""
        return {n: p.detach().clone() for n, p in self.params.items()}

    def state_tensors(self) -> dict[str, Tensor]:
        """Adam's moments and step counts and the shuffling generator, for a checkpoint."""
        tensors = {f"{_ADAM_PREFIX}generator": self.generator.get_state()}
        for name, param in self.params.items():
            for key, value in self.optimizer.state.get(param, {}).items():
                tensors[f"{_ADAM_PREFIX}{name}/{key}"] = value
        return tensors

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore what :meth:`state_tensors` saved (parameters are set separately).

        Raises:
            KeyError: the shuffling generator's state is missing.
        """
        self.generator.set_state(tensors[f"{_ADAM_PREFIX}generator"])
        for name, param in self.params.items():
            prefix = f"{_ADAM_PREFIX}{name}/"
            state = {k[len(prefix):]: v.clone() for k, v in tensors.items()
                     if k.startswith(prefix)}
            if state:
                self.optimizer.state[param] = state

    def load_params(self, params: Params) -> None:
        """Overwrite the parameters in place (Adam keeps referring to the same tensors)."""
        with torch.no_grad():
            for name, value in params.items():
                self.params[name].copy_(value)
