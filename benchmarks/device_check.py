"""Each algorithm trained a few iterations on a device and on the CPU, side by side.

For every built-in algorithm (a packaged config shrunk to seconds per iteration), trains the
same run twice, ``run.device`` = DEVICE and ``cpu``, from the same seed, and prints per
algorithm the largest relative difference of the final parameters
(``max |p_dev - p_cpu| / max(max |p_cpu|, 1e-8)`` over tensors) and the speed ratio (CPU
seconds per iteration / device seconds per iteration; above 1: the device is faster). The last
line is JSON. The sampler runs on the CPU either way; only the learner moves.

    python benchmarks/device_check.py [--device cuda] [--iterations 3] [--algorithms rl2 ...]

Without a GPU, ``--device auto`` falls back to the CPU and the check compares the CPU with
itself (a sanity check: differences 0). Differences on a GPU come from float32 rounding in
other kernels, grown through a few iterations of training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from fastadapt.run.checkpoint import load_tensors
from fastadapt.run.config_loading import load_train_config
from fastadapt.run.device import resolve_device
from fastadapt.run.logging import read_metrics
from fastadapt.run.trainer import train

CASES = {  # algorithm: (packaged config, overrides that shrink it)
    "maml-trpo": ("maml-trpo/2d-navigation", ["maml-trpo.tasks_per_iteration=10",
                                              "maml-trpo.episodes_per_task=10"]),
    "maml-vpg": ("maml-vpg/2d-navigation", ["maml-vpg.tasks_per_iteration=10",
                                            "maml-vpg.episodes_per_task=10"]),
    "maml-ppo": ("maml-ppo/2d-navigation", ["maml-ppo.tasks_per_iteration=10",
                                            "maml-ppo.episodes_per_task=10"]),
    "promp": ("promp/2d-navigation", ["promp.tasks_per_iteration=10",
                                      "promp.episodes_per_task=10"]),
    "meta-sgd": ("meta-sgd/bandit-k5", ["meta-sgd.tasks_per_iteration=10"]),
    "rl2": ("rl2/bandit-k5", ["rl2.tasks_per_iteration=16"]),
    "finetune": ("finetune/2d-navigation", ["finetune.tasks_per_iteration=10",
                                            "finetune.episodes_per_task=10"]),
    "random-init": ("finetune/2d-navigation", ["algorithm=random-init",
                                               "finetune.episodes_per_task=10"]),
    "oracle": ("finetune/2d-navigation", ["algorithm=oracle", "finetune.episodes_per_task=10"]),
    "pearl": ("pearl/2d-navigation", ["pearl.train_tasks=10", "pearl.initial_episodes=2",
                                      "pearl.gradient_steps=50", "env.horizon=20"]),
}


def _train(algorithm: str, device: str, iterations: int, root: Path
           ) -> tuple[dict[str, torch.Tensor], float]:
    """Final parameters and median seconds per iteration of one run on ``device`` (in a new
    directory under ``root``)."""
    config_name, overrides = CASES[algorithm]
    config = load_train_config(config_name, [
        *overrides, f"run.iterations={iterations}", f"run.device={device}",
        "run.tensorboard=false", "run.checkpoint_every=1000"])
    run_dir = Path(tempfile.mkdtemp(prefix=f"{algorithm}-{device.replace(':', '_')}-", dir=root))
    train(config, run_dir, show_progress=False)
    tensors, _ = load_tensors(run_dir / "policy.safetensors")
    seconds = [record["seconds"] for record in read_metrics(run_dir)]
    return tensors, statistics.median(seconds[1:] or seconds)  # the first warms up


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """``max |a - b| / max(max |b|, 1e-8)`` over the tensors of two parameter files."""
    worst = 0.0
    for name, reference in b.items():
        scale = max(float(reference.abs().max()), 1e-8)
        worst = max(worst, float((a[name].double() - reference.double()).abs().max()) / scale)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="the device to check (default auto)")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--algorithms", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    print(f"device {device} ({name}) against cpu, {args.iterations} iterations each")
    print("| algorithm | max relative parameter difference | speed ratio (cpu s / device s) |")
    print("|---|---|---|")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for algorithm in args.algorithms:
            on_device, device_seconds = _train(algorithm, device, args.iterations, Path(tmp))
            on_cpu, cpu_seconds = _train(algorithm, "cpu", args.iterations, Path(tmp))
            difference = relative_difference(on_device, on_cpu)
            ratio = cpu_seconds / device_seconds
            results[algorithm] = {"max_relative_difference": difference, "speed_ratio": ratio,
                                  "device_seconds": device_seconds, "cpu_seconds": cpu_seconds}
            print(f"| {algorithm} | {difference:.2e} | {ratio:.2f} |", flush=True)
    print(json.dumps({"device": device, "device_name": name, "iterations": args.iterations,
                      "results": results}))


if __name__ == "__main__":
    main()
