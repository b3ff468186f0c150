"""RL² end to end: learning a two-armed bandit, CLI train/evaluate/resume, schedules, bad
configs, plots and the exploration benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastadapt.cli import main
from fastadapt.envs import registry
from fastadapt.envs.bandit import BanditTask, BernoulliBandit
from fastadapt.policies.recurrent import Cell
from fastadapt.run.checkpoint import load_tensors


class _TwoArm(BernoulliBandit):
    """2-armed bandits whose good arm (p = 0.9 vs 0.1) is drawn at random per task."""

    name = "TwoArm"

    def __init__(self, num_arms: int = 2, num_pulls: int = 1) -> None:
        super().__init__(2, num_pulls)

    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[BanditTask]:
        flips = rng.random(num_tasks) < 0.5
        return [BanditTask((0.9, 0.1) if flip else (0.1, 0.9)) for flip in flips]


RL2_TINY = [
    "--set", "algorithm=rl2",
    "--set", "run.tensorboard=false",
    "--set", "run.num_threads=1",
    "--quiet",
]


def test_rl2_finds_the_good_arm_within_a_trial(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.FAMILIES.targets, "TwoArm", _TwoArm)
    run = tmp_path / "run"
    assert main(["train", "rl2/bandit-k5", "--run-dir", str(run), *RL2_TINY,
                 "--set", "env.name=TwoArm", "--set", "env.kwargs={}",
                 "--set", "rl2.tasks_per_iteration=16", "--set", "rl2.trials_per_task=4",
                 "--set", "rl2.episodes_per_trial=5", "--set", "rl2.hidden_size=16",
                 "--set", "rl2.ppo.learning_rate=0.01", "--set", "rl2.ppo.minibatches=2",
                 "--set", "run.checkpoint_every=100", "--iterations", "60"]) == 0
    assert main(["evaluate", str(run), "--tasks", "100", "--episodes", "4"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["algorithm"] == "rl2" and result["episodes_per_step"] == 1
    first, last = result["returns_mean"][0], result["returns_mean"][-1]
    # a random (or any non-adaptive) policy gets 0.5 per pull; the first pull cannot know
    assert last > 0.75, result["returns_mean"]
    assert last > first + 0.15, result["returns_mean"]


def _straight_and_resumed(tmp_path: Path, args: list[str], iterations: int
                          ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Final parameters of ``iterations`` straight (``tmp_path/straight``) and of one fewer
    then resumed to ``iterations`` (``tmp_path/resumed``)."""
    assert main(["train", *args, "--run-dir", str(tmp_path / "straight"),
                 "--iterations", str(iterations)]) == 0
    assert main(["train", *args, "--run-dir", str(tmp_path / "resumed"),
                 "--iterations", str(iterations - 1)]) == 0
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--iterations",
                 str(iterations), "--quiet"]) == 0
    straight, _ = load_tensors(tmp_path / "straight" / "policy.safetensors")
    resumed, _ = load_tensors(tmp_path / "resumed" / "policy.safetensors")
    return straight, resumed


@pytest.mark.parametrize(("separate", "time_input", "cell", "task_critic"), [
    (False, False, "gru", False), (True, False, "gru", False), (False, True, "gru", True),
    (True, False, "lstm", True), (True, True, "relu_gru", False)])
def test_rl2_cli_train_evaluate_and_bit_identical_resume(tmp_path: Path, separate: bool,
                                                        time_input: bool, cell: Cell,
                                                        task_critic: bool) -> None:
    tiny = ["rl2/2d-navigation", *RL2_TINY, "--set", "env.horizon=5",
            "--set", "rl2.tasks_per_iteration=3", "--set", "rl2.trials_per_task=2",
            "--set", "rl2.hidden_size=8", "--set", "run.checkpoint_every=1",
            "--set", "rl2.ppo.minibatches=2", "--set", f"rl2.separate_value_gru={separate}",
            "--set", f"rl2.time_input={time_input}", "--set", f"rl2.cell={cell}",
            "--set", f"rl2.task_critic={task_critic}"]
    straight, resumed = _straight_and_resumed(tmp_path, tiny, 3)
    assert straight.keys() == resumed.keys()
    trunks = [cell, f"value_{cell}"] if separate else [cell]
    value_layers = ["value", "value_hidden"] if task_critic else ["value"]
    assert set(straight) == {"head.weight", "head.bias", "log_std",
                             *(f"{v}.{kind}" for v in value_layers for kind in ("weight", "bias")),
                             *(f"{t}_{side}.{kind}" for t in trunks for side in ("input", "hidden")
                               for kind in ("weight", "bias"))}  # gru_*: the names of old runs
    if task_critic:  # 8 units of the value trunk and the goal (x, y)
        assert straight["value_hidden.weight"].shape == (8, 8 + 2)
    assert straight[f"{cell}_input.weight"].shape == (  # gates x units, obs, a, r, d (, t / L)
        (4 if cell == "lstm" else 3) * 8, 2 + 2 + 2 + int(time_input))
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name
    records = [json.loads(line) for line in
               (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2, 3]
    for key in ("seconds", "env_steps", "return_before", "return_after", "kl"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert records[0]["env_steps"] == 3 * 2 * 2 * 5  # tasks x trials x episodes x steps
    run = tmp_path / "straight"
    assert main(["evaluate", str(run), "--tasks", "3", "--episodes", "2"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["adaptation_steps"] == 1 and len(result["returns_mean"]) == 2
    assert np.array(result["per_task_returns"]).shape == (3, 2)
    assert len(result["trajectories"]) == 3
    # Navigation2D reports no success: neither training nor evaluation gains success keys
    assert not any(key.startswith("success") for key in [*result, *records[0]])
    # an RL² trial has no separately sampled adapted policy: --eval-episodes is refused
    assert main(["evaluate", str(run), "--eval-episodes", "3"]) == 2
    # worker processes sample the in-process trials (up to the GRU's float32 rounding)
    assert main(["evaluate", str(run), "--tasks", "3", "--episodes", "2", "--sampler",
                 "process", "--workers", "2"]) == 0
    by_workers = json.loads((run / "evaluation.json").read_text())
    np.testing.assert_allclose(by_workers["per_task_returns"], result["per_task_returns"],
                               rtol=1e-4)
    assert main(["plot", str(run)]) == 0


@pytest.mark.parametrize(("setting", "parameter", "shape"), [
    # gates x units; inputs: state, action, reward, flag and 2 x (10 + 1) x 5 transition slots
    ("rl2.transition_input=true", "gru_input.weight", (3 * 8, 10 + 5 + 2 + 110)),
    # the value layer reads 8 GRU units and the task: P (10 x 5 x 10) then R (10 x 5)
    ("rl2.task_critic=true", "value_hidden.weight", (8, 8 + 500 + 50)),
    # the belief head predicts the task (P then R) from 8 GRU units
    ("rl2.task_inference_coef=0.5", "belief.weight", (500 + 50, 8)),
])
def test_tabular_option_trains_resumes_bit_identically_and_evaluates(
        tmp_path: Path, setting: str, parameter: str, shape: tuple[int, int]) -> None:
    tiny = ["rl2/tabular-mdp", *RL2_TINY, "--set", setting,
            "--set", "rl2.hidden_size=8", "--set", "rl2.tasks_per_iteration=2",
            "--set", "rl2.trials_per_task=2", "--set", "rl2.episodes_per_trial=2",
            "--set", "run.checkpoint_every=1"]
    straight, resumed = _straight_and_resumed(tmp_path, tiny, 2)
    assert straight[parameter].shape == shape
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name
    run = tmp_path / "straight"
    assert main(["evaluate", str(run), "--tasks", "3", "--episodes", "2"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert np.array(result["per_task_returns"]).shape == (3, 2)


@pytest.mark.parametrize(
    ("settings", "key", "expected"),
    [   # iteration i of N uses 0.003 (1 - i / N)
        (["rl2.ppo.anneal_lr=true", "rl2.ppo.learning_rate=0.003"], "learning_rate",
         [0.003, 0.002, 0.001, 0.00075]),
        # iteration i of N uses 0.05 + (0.01 - 0.05) i / N
        (["rl2.ppo.entropy_coef=0.05", "rl2.ppo.entropy_coef_final=0.01"], "entropy_coef",
         [0.05, 0.05 - 0.04 / 3, 0.05 - 0.08 / 3, 0.02]),
    ],
)
def test_linear_schedules_follow_the_run_length_through_resume(
        tmp_path: Path, settings: list[str], key: str, expected: list[float]) -> None:
    run = tmp_path / "schedule"
    tiny = ["rl2/bandit-k5", *RL2_TINY, "--set", "rl2.tasks_per_iteration=2",
            "--set", "rl2.trials_per_task=2", "--set", "rl2.hidden_size=8",
            *(arg for setting in settings for arg in ("--set", setting))]
    assert main(["train", *tiny, "--run-dir", str(run), "--iterations", "3"]) == 0
    assert main(["train", "--resume", str(run), "--iterations", "4", "--quiet"]) == 0
    logged = [json.loads(line)[key] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == pytest.approx(expected)  # the resumed run follows its new total N = 4


@pytest.mark.parametrize("rl2", [True, False])
def test_learning_curve_names_what_before_and_after_mean(rl2: bool) -> None:
    import matplotlib.pyplot as plt

    from fastadapt.plots.run import _learning_curve

    figure, ax = plt.subplots()
    _learning_curve(ax, [{"iteration": 1, "return_before": -2.0, "return_after": -1.0}],
                    "episodes" if rl2 else "gradient_steps")
    labels = ax.get_legend_handles_labels()[1]
    plt.close(figure)
    expected = (["first episode of the trial", "last episode of the trial"] if rl2
                else ["before adaptation", "after adaptation"])
    assert labels == expected


NAVIGATION = "rl2/2d-navigation"
METAWORLD_REACH = "rl2/metaworld-ml1-reach"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "rl2.episodes_per_trail=2"], "did you mean 'rl2.episodes_per_trial'"),
        (["--set", "rl2.hidden_size=0"], "rl2.hidden_size must be >= 1"),
        (["--set", "rl2.cell=lsmt"], "'rl2.cell' must be one of 'gru', 'lstm'"),
        (["--set", "rl2.gae_lambda=1.5"], "rl2.gae_lambda must be in [0, 1]"),
        (["--set", "rl2.ppo.clip_ratio=1.5"], "rl2.ppo.clip_ratio must be in (0, 1)"),
        (["--set", "rl2.ppo.epochs=many"], "'rl2.ppo.epochs' must be an int"),
        (["--set", "rl2.ppo.entropy=0.1"], "did you mean 'rl2.ppo.entropy_coef'"),
        (["--set", "algorithm=rl3"], "unknown algorithm 'rl3'; did you mean rl2? "
                                     "(known: "),  # plugins may come before and after
        ([NAVIGATION, "--set", "rl2.transition_input=true"],
         "rl2.transition_input needs discrete actions; Navigation2D has Box"),
        pytest.param([METAWORLD_REACH, "--set", "rl2.task_critic=true"],
                     "rl2.task_critic needs tasks made of numbers; MetaWorld-ML1-reach-v3's "
                     "are not", marks=pytest.mark.skipif(
                         not registry.metaworld_installed(),
                         reason="pip install 'fastadapt[metaworld]'")),
        pytest.param([METAWORLD_REACH, "--set", "rl2.task_inference_coef=1.0"],
                     "rl2.task_inference_coef needs tasks made of numbers; "
                     "MetaWorld-ML1-reach-v3's are not", marks=pytest.mark.skipif(
                         not registry.metaworld_installed(),
                         reason="pip install 'fastadapt[metaworld]'")),
        (["--set", "rl2.task_inference_coef=-0.5"], "rl2.task_inference_coef must be >= 0"),
    ],
)
def test_bad_rl2_config_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          args: list[str], expected: str) -> None:
    """A bad key or value, or an option the family cannot take (the first argument, when it
    is a config name, replaces the bandit config)."""
    config = "rl2/bandit-k5"
    if not args[0].startswith("--"):
        config, *args = args
    code = main(["train", config, "--run-dir", str(tmp_path / "run"), "--quiet", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("fastadapt: error: ") and len(err.splitlines()) == 1
    assert expected in err
    assert not (tmp_path / "run").exists()


def test_exploration_benchmark_profiles_a_bandit_run(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    assert main(["train", "rl2/bandit-k5", "--run-dir", str(run), *RL2_TINY,
                 "--set", "rl2.tasks_per_iteration=4", "--set", "rl2.trials_per_task=2",
                 "--iterations", "2"]) == 0
    done = subprocess.run([sys.executable, "benchmarks/rl2_bandit_exploration.py", str(run),
                           "--tasks", "6", "--trials", "2", "--greedy"],
                          capture_output=True, text=True, check=True, timeout=120,
                          cwd=Path(__file__).parents[1])
    rows = [line for line in done.stdout.splitlines() if line.startswith("| RL²")
            or line.startswith("| FH-Gittins")]
    assert len(rows) == 3 and "most likely arm" in rows[1], done.stdout
    for line in rows:  # player | total | 10 tenths | arms tried (1..5) | share (0..1)
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[1]) == pytest.approx(sum(map(float, cells[2].split(" / "))),
                                                abs=0.06)  # 10 roundings
        assert 1.0 <= float(cells[3]) <= 5.0 and 0.0 <= float(cells[4]) <= 1.0
    # --greedy plays the argmax of the logits the policy computes from the trial so far
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    from rl2_bandit_exploration import rl2_trials

    for greedy in (True, False):
        _, trials, policy, params = rl2_trials(run, 6, 2, seed=0, greedy=greedy)
        inputs, masks = trials.inputs.flatten(0, 1), trials.masks.flatten(0, 1)
        with torch.no_grad():
            out = policy.unroll(params, inputs, masks, policy.initial_hidden(len(inputs))).out
        agrees = out.argmax(-1) == trials.actions.flatten(0, 1)
        assert bool(agrees.all()) == greedy  # sampled play departs from the argmax somewhere


def test_imitation_benchmark_learns_gittins_labels_and_warm_starts_rl2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    from rl2_bandit_imitation import fit_value_head, flat_trials, imitate, imitation_loss

    from fastadapt.algorithms.registry import build_algorithm
    from fastadapt.baselines.bandits import gittins_choices, gittins_indices
    from fastadapt.run.config_loading import load_train_config, resolve
    from fastadapt.run.rundir import load_run_config
    from fastadapt.sampling.vector import VectorSampler

    small = ["env.kwargs.num_arms=3", "rl2.episodes_per_trial=10", "rl2.hidden_size=16",
             "rl2.tasks_per_iteration=8", "rl2.trials_per_task=4", "rl2.ppo.epochs=2",
             "rl2.ppo.minibatches=2", "rl2.ppo.learning_rate=0.01"]
    setup = build_algorithm(resolve(load_train_config("rl2/bandit-k5-n100", small)),
                            torch.device("cpu"))

    def loss_on_fresh_trials(params: dict[str, torch.Tensor]) -> float:
        with VectorSampler(setup.family, setup.policy, 1, seed=5) as sampler:
            tasks = setup.family.sample_tasks(np.random.default_rng(5), 16)
            trials = flat_trials(sampler.sample_trials(params, tasks, 4, 10))
        labels = torch.from_numpy(gittins_choices(trials.actions.numpy(),
                                                  trials.rewards.numpy(), 3))
        with torch.no_grad():
            return float(imitation_loss(setup, params, trials, labels))

    before = loss_on_fresh_trials(setup.initial_parameters())
    learned = imitate(setup, 100, seed=1, table=gittins_indices(10))
    assert loss_on_fresh_trials(learned) < 0.6 * before  # held-out histories, not the batch's
    fitted = fit_value_head(setup, learned, seed=1)
    assert fitted["value.weight"].shape == learned["value.weight"].shape
    assert all(torch.equal(fitted[n], learned[n]) for n in learned if not n.startswith("value"))
    # end to end: the run directory it writes is evaluated and warm-starts RL² (PPO)
    done = subprocess.run(
        [sys.executable, "benchmarks/rl2_bandit_imitation.py", "--arms", "3", "--iterations",
         "2", "--ppo-iterations", "1", "--tasks", "6", "--trials", "2", "--out",
         str(tmp_path), *(arg for s in small for arg in ("--set", s))],
        capture_output=True, text=True, check=True, timeout=120, cwd=Path(__file__).parents[1])
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == [
        "imitation", "RL² (PPO) from it, 1 iterations", "FH-Gittins, same bandits"], done.stdout
    assert (tmp_path / "imitation" / "evaluation.json").exists()
    config = load_run_config(tmp_path / "rl2-from-imitation")
    assert config.run.init_from == str(tmp_path / "imitation")
