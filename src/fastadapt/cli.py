"""The ``fastadapt`` command: ``train``, ``evaluate``, ``plot``, ``compare``, ``envs``.

Errors a user can cause print one line (``fastadapt: error: ...``) and exit with code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fastadapt.errors import ConfigError, FastAdaptError


def _train(args: argparse.Namespace) -> None:
    from fastadapt.plots import plot_run
    from fastadapt.run.config import load_config
    from fastadapt.run.schema import TrainConfig
    from fastadapt.run.train import CONFIG_FILE, load_run_config, train

    overrides = list(args.set)
    if args.iterations is not None:
        overrides.append(f"run.iterations={args.iterations}")
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    if args.sampler is not None:
        overrides.append(f"run.sampler={args.sampler}")
    if args.workers is not None:
        overrides.append(f"run.workers={args.workers}")
    if args.resume is not None:
        run_dir = Path(args.resume)
        load_run_config(run_dir)  # clear error if it is not a run directory
        config = load_config(TrainConfig, run_dir / CONFIG_FILE, overrides)
    elif args.config is None:
        raise ConfigError("give a CONFIG.yaml to train, or --resume RUN_DIR")
    else:
        config = load_config(TrainConfig, args.config, overrides)
        stem = Path(args.config).stem
        run_dir = Path(args.run_dir or f"runs/{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"run directory: {run_dir}  ({config.algorithm} on {config.env.name})")
    policy_path = train(config, run_dir, resume=args.resume is not None,
                        show_progress=not args.quiet)
    print(f"meta-parameters: {policy_path}")
    print(f"report: {plot_run(run_dir)}")


def _evaluate(args: argparse.Namespace) -> None:
    from fastadapt.evaluate import evaluate_run

    path = evaluate_run(
        Path(args.run_dir), args.tasks, args.adaptation_steps, args.episodes, args.seed,
        args.eval_episodes, args.sampler, args.workers,
    )
    import json

    result = json.loads(path.read_text())
    rl2 = result.get("algorithm") == "rl2"
    unit = "trials per task" if rl2 else "episodes per step"
    eval_episodes = result.get("eval_episodes_per_task", result["episodes_per_task"])
    last = "" if eval_episodes == result["episodes_per_task"] else f", {eval_episodes} after"
    print(f"meta-test on {result['num_tasks']} held-out tasks of {result['env']} "
          f"({result['episodes_per_task']} {unit}{last})")
    for k, (mean, ci) in enumerate(zip(result["returns_mean"], result["returns_ci95"],
                                       strict=True)):
        point = f"episode {k + 1} of the trial" if rl2 else f"after {k} step{'s' * (k != 1)}"
        success = ""
        if "success_rate_mean" in result:  # families that report success (Meta-World)
            rate, rate_ci = result["success_rate_mean"][k], result["success_rate_ci95"][k]
            success = f", success {100 * rate:.1f}% ± {100 * rate_ci:.1f}"
        print(f"  {point}: return {mean:9.2f} ± {ci:.2f}{success}")
    print(f"written: {path}")


def _plot(args: argparse.Namespace) -> None:
    from fastadapt.plots import plot_run

    print(f"report: {plot_run(Path(args.run_dir))}")


def _compare(args: argparse.Namespace) -> None:
    from fastadapt.plots import compare_runs

    figure, table = compare_runs([Path(run) for run in args.run_dirs], Path(args.output))
    print(table)
    print(f"figure: {figure}")


def _envs(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from fastadapt.envs.registry import describe_families

    rows = describe_families()
    table = Table(title="task families")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*row.values())
    Console().print(table)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastadapt`` command."""
    parser = argparse.ArgumentParser(prog="fastadapt", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="meta-train from a YAML config")
    p.add_argument("config", nargs="?", help="YAML config (configs/<algorithm>/*.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, dots for nesting (trpo.max_kl=0.02)")
    p.add_argument("--iterations", type=int, help="meta-iterations (run.iterations)")
    p.add_argument("--seed", type=int, help="run.seed")
    # Checked by the config (one-line errors), not by argparse:
    p.add_argument("--sampler", metavar="{vector,process,ray}",
                   help="run.sampler: in-process (default), worker processes or Ray actors")
    p.add_argument("--workers", metavar="N",
                   help="run.workers: worker processes / Ray actors of --sampler process|ray")
    p.add_argument("--run-dir", help="output directory (default runs/<config>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = commands.add_parser("evaluate", help="meta-test a run on held-out tasks")
    p.add_argument("run_dir")
    p.add_argument("--tasks", type=int, help="held-out tasks (default: config, 40)")
    p.add_argument("--adaptation-steps", type=int, help="inner steps K (returns after 0..K)")
    p.add_argument("--episodes", type=int, help="episodes per task and step")
    p.add_argument("--eval-episodes", type=int,
                   help="episodes per task sampled with the finally adapted policy (default: "
                        "--episodes; Meta-World's protocol: 3 after 10-episode steps)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation rollouts")
    p.add_argument("--sampler", metavar="{vector,process,ray}",
                   help="who steps the envs (default: the run's run.sampler; same result)")
    p.add_argument("--workers", metavar="N",
                   help="worker processes / Ray actors (default: the run's run.workers)")
    p.set_defaults(func=_evaluate)

    p = commands.add_parser("plot", help="draw RUN_DIR/report.png")
    p.add_argument("run_dir")
    p.set_defaults(func=_plot)

    p = commands.add_parser(
        "compare", help="adaptation curves of evaluated runs in one PNG and a markdown table"
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="evaluated runs; runs of one algorithm and env are pooled")
    p.add_argument("--output", default="compare.png", help="PNG to write (default compare.png)")
    p.set_defaults(func=_compare)

    p = commands.add_parser("envs", help="list the task families")
    p.set_defaults(func=_envs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastadapt`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FastAdaptError as err:
        if args.debug:
            raise
        print(f"fastadapt: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastadapt: interrupted; checkpoints written so far are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
