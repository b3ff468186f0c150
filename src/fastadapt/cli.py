"""The ``fastadapt`` command: ``train``, ``evaluate``, ``plot``, ``compare``, ``sweep``,
``report``, ``envs``, ``algorithms``, ``configs``.

Errors a user can cause print one line (``fastadapt: error: ...``) and exit with code 2;
``--debug`` shows the traceback instead. ``--plugin MODULE`` (any command, repeatable) imports
a module that registers task families or algorithms; installed plugins are found through their
entry points without it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from fastadapt.errors import ConfigError, FastAdaptError, OutputError, Terminated
from fastadapt.plugins import load_plugins
from fastadapt.run.console import (
    ArgumentParser,
    GuardedOutput,
    discard_stdout,
    sigterm_as_interrupt,
    sigterm_received,
)
from fastadapt.run.console import (
    integer_option as count,
)


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.set)
    for option, key in (("iterations", "iterations"), ("seed", "seed"), ("sampler", "sampler"),
                        ("workers", "workers"), ("device", "device")):
        value = getattr(args, option)
        if value is not None:
            overrides.append(f"run.{key}={value}")
    return overrides


def _train(args: argparse.Namespace) -> None:
    from fastadapt.plots import plot_run
    from fastadapt.run.config_loading import load_train_config
    from fastadapt.run.lock import RunLock
    from fastadapt.run.rundir import load_run_config
    from fastadapt.run.trainer import Trainer

    overrides = _overrides(args)
    lock = None
    if args.resume is not None:
        run_dir = Path(args.resume)
        lock = RunLock(run_dir, "fastadapt train --resume").acquire()  # before reading it
        try:
            config = load_run_config(run_dir, overrides, args.plugin)
        except BaseException:
            lock.release()  # not a run: no lock file left in it
            raise
    elif args.config is None:
        raise ConfigError("give a CONFIG to train (a YAML file or a packaged config such as "
                          "maml-trpo/2d-navigation), or --resume RUN_DIR")
    else:
        config = load_train_config(args.config, overrides, args.plugin)
        stem = f"{config.algorithm}-{Path(args.config).stem}"
        run_dir = Path(args.run_dir or f"runs/{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        args.run_dir = str(run_dir)  # for the line of an interrupt
    trainer = Trainer(config, run_dir, args.resume is not None, not args.quiet, lock)
    if args.resume is not None:
        done, total = trainer.iteration, trainer.iterations
        if done >= total:
            trainer.close()
            print(f"{run_dir} has run {done} iterations (run.iterations {total}): nothing to "
                  f"train (pass --iterations N with N > {done} to train further)")
            return
        print(f"resuming {run_dir} at iteration {done} of {total}", flush=True)
    policy_path = trainer.run(
        lambda ready: print(f"run directory: {ready}  ({config.algorithm} on {config.env.name})",
                            flush=True))
    print(f"meta-parameters: {policy_path}")
    print(f"report: {plot_run(run_dir)}")


def _evaluate(args: argparse.Namespace) -> None:
    from fastadapt.evaluation.evaluation_file import read_evaluation
    from fastadapt.evaluation.metaworld_protocol import evaluate_from_cli
    from fastadapt.evaluation.protocol import evaluate_run

    lines = evaluate_from_cli(vars(args))  # --protocol metaworld; None: ours
    if lines is not None:
        print("\n".join(lines))
        return
    path = evaluate_run(
        Path(args.run_dir), args.tasks, args.adaptation_steps, args.episodes, args.seed,
        args.eval_episodes, args.sampler, args.workers, args.plugin,
    )
    result = read_evaluation(path.parent)
    by_episodes = result["adapts_by"] == "episodes"
    unit = "trials per task" if by_episodes else "episodes per step"
    eval_episodes = result.get("eval_episodes_per_task", result["episodes_per_task"])
    last = "" if eval_episodes == result["episodes_per_task"] else f", {eval_episodes} after"
    print(f"meta-test on {result['num_tasks']} held-out tasks of {result['env']} "
          f"({result['episodes_per_task']} {unit}{last})")
    for k, (mean, ci) in enumerate(zip(result["returns_mean"], result["returns_ci95"],
                                       strict=True)):
        point = (f"episode {k + 1} of the trial" if by_episodes
                 else f"after {k} step{'s' * (k != 1)}")
        success = ""
        if "success_rate_mean" in result:  # families that report success (Meta-World)
            rate, rate_ci = result["success_rate_mean"][k], result["success_rate_ci95"][k]
            success = f", success {100 * rate:.1f}% ± {100 * rate_ci:.1f}"
        print(f"  {point}: return {mean:9.2f} ± {ci:.2f}{success}")
    print(f"written: {path}")


def _warn_about_metrics(run_dirs: list[Path]) -> None:
    """A warning line for each run whose ``metrics.jsonl`` has lines that are not records."""
    from fastadapt.run.logging import describe_skipped, read_metrics_file

    for run_dir in run_dirs:
        skipped = read_metrics_file(run_dir).skipped
        if skipped:
            print(f"fastadapt: warning: {run_dir}: {describe_skipped(skipped)}", file=sys.stderr)


def _plot(args: argparse.Namespace) -> None:
    from fastadapt.plots import plot_run

    load_plugins(args.plugin)  # once: runs without facts.json are read through them
    run_dir = Path(args.run_dir)
    print(f"report: {plot_run(run_dir)}")
    _warn_about_metrics([run_dir])


def _compare(args: argparse.Namespace) -> None:
    from fastadapt.plots import compare_efficiency, compare_runs

    load_plugins(args.plugin)
    run_dirs = [Path(run) for run in args.run_dirs]
    compare = compare_efficiency if args.x == "env-steps" else compare_runs
    figure, table = compare(run_dirs, Path(args.output), args.label)
    print(table)
    print(f"figure: {figure}")
    _warn_about_metrics(run_dirs)


def _grid(values: list[str]) -> dict[str, list[str]]:
    """``--grid KEY=V1,V2`` options as ``{KEY: [V1, V2]}``.

    Raises:
        ConfigError: an option without ``=`` or without values.
    """
    grid: dict[str, list[str]] = {}
    for option in values:
        key, sep, listed = option.partition("=")
        if not sep or not key.strip() or not listed.strip():
            raise ConfigError(f"--grid wants KEY=V1,V2,..., got {option!r}")
        grid[key.strip()] = [value.strip() for value in listed.split(",")]
    return grid


def _sweep(args: argparse.Namespace) -> None:
    from fastadapt.sweeps import run_status, sweep

    run_dirs = sweep(args.config, args.seeds, Path(args.root), args.set, _grid(args.grid),
                     args.plugin, args.workers)
    done = sum(run_status(run) == "done" for run in run_dirs)
    print(f"{done} of {len(run_dirs)} runs evaluated under {args.root}")
    print(f"aggregate them: fastadapt report {args.root}/*-seed*")


def _report(args: argparse.Namespace) -> None:
    from fastadapt.plots import report_runs

    load_plugins(args.plugin)
    run_dirs = [Path(run) for run in args.run_dirs]
    point = None if args.total else args.point
    figure, table = report_runs(run_dirs, Path(args.output), point)
    print(table)
    print(f"figure: {figure}")


def _print_rows(rows: list[dict[str, str]], title: str, output: str) -> None:
    """Rows as a rich table on a terminal, else as tab-separated lines with a header (full
    names, for pipes and logs), or as JSON with ``--format json``."""
    if output == "json":
        print(json.dumps(rows, indent=1))
        return
    if output == "table" or (output == "auto" and sys.stdout.isatty()):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for column in rows[0]:
            table.add_column(column)
        for row in rows:
            table.add_row(*row.values())
        Console().print(table)
        return
    print("\t".join(rows[0]))
    for row in rows:
        print("\t".join(row.values()))


def _envs(args: argparse.Namespace) -> None:
    from fastadapt.envs.registry import describe_families

    load_plugins(args.plugin)
    _print_rows(describe_families(), "task families", args.format)


def _algorithms(args: argparse.Namespace) -> None:
    from fastadapt.algorithms.registry import describe_algorithms

    load_plugins(args.plugin)
    _print_rows(describe_algorithms(), "algorithms", args.format)


def _configs(args: argparse.Namespace) -> None:
    from fastadapt.run.config_loading import describe_packaged_configs

    _print_rows(describe_packaged_configs(), "packaged configs", args.format)


def _command(commands: Any, name: str, help_text: str, common: argparse.ArgumentParser
             ) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text,
                                                          parents=[common])
    return parser


def _add_train(commands: Any, common: argparse.ArgumentParser) -> None:
    p = _command(commands, "train", "meta-train from a config", common)
    p.add_argument("config", nargs="?",
                   help="a YAML config, or a packaged one by name (fastadapt configs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, dots for nesting (maml-trpo.inner_lr=0.05)")
    p.add_argument("--iterations", type=count, help="meta-iterations (run.iterations)")
    p.add_argument("--seed", type=count, help="run.seed")
    # Checked by the config (one-line errors), not by argparse:
    p.add_argument("--sampler", metavar="{vector,process,ray}",
                   help="run.sampler: in-process (default), worker processes or Ray actors")
    p.add_argument("--workers", metavar="N",
                   help="run.workers: worker processes / Ray actors of --sampler process|ray")
    p.add_argument("--device", metavar="DEVICE",
                   help="run.device: cpu (default), cuda, cuda:N, mps or auto")
    p.add_argument("--run-dir", help="output directory (default runs/<algorithm>-<config>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _add_evaluate(commands: Any, common: argparse.ArgumentParser) -> None:
    p = _command(commands, "evaluate", "meta-test a run on held-out tasks", common)
    p.add_argument("run_dir")
    p.add_argument("--tasks", type=count, help="held-out tasks (default: config, 40)")
    p.add_argument("--adaptation-steps", type=count, help="inner steps K (returns after 0..K)")
    p.add_argument("--episodes", type=count, help="episodes per task and step")
    p.add_argument("--eval-episodes", type=count,
                   help="episodes per task sampled with the finally adapted policy (default: "
                        "--episodes; Meta-World's protocol: 3 after 10-episode steps)")
    p.add_argument("--seed", type=count, default=0, help="seed of the evaluation rollouts")
    p.add_argument("--sampler", metavar="{vector,process,ray}",
                   help="who steps the envs (default: the run's run.sampler; same result)")
    p.add_argument("--workers", metavar="N",
                   help="worker processes / Ray actors (default: the run's run.workers)")
    p.add_argument("--protocol", default="fastadapt", help="fastadapt or metaworld (Meta-World's "
                   "own, added to evaluation.json; --tasks: goals per class)")
    for option, what in (("metaworld-evals", "rounds (10)"), ("meta-batch-size", "envs (20)"),
                         ("horizon", "steps per episode (500)")):
        p.add_argument(f"--{option}", type=count, metavar="N", help=f"--protocol metaworld: {what}")
    p.set_defaults(func=_evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastadapt`` command."""
    common = ArgumentParser(add_help=False)
    common.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (it registers families or algorithms)")
    parser = ArgumentParser(prog="fastadapt", description=(
        "Meta-reinforcement learning: train an agent on a distribution of tasks, meta-test "
        "it on held-out tasks, and plot, compare and aggregate runs. Errors are one line "
        "(exit code 2); Ctrl-C exits with 130 and SIGTERM with 143, checkpoints kept."))
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train(commands, common)
    _add_evaluate(commands, common)
    p = _command(commands, "plot", "draw RUN_DIR/report.png", common)
    p.add_argument("run_dir")
    p.set_defaults(func=_plot)
    p = _command(commands, "compare", "adaptation curves of evaluated runs in one PNG and a "
                 "markdown table", common)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="evaluated runs; seeds (configs alike but for run.*, evaluate.*) and "
                        "a sweep's NAME-seedK are pooled, other rows labelled by what differs")
    p.add_argument("--label", action="append", default=[], metavar="NAME",
                   help="the row of each RUN_DIR, in order (runs of one NAME are pooled)")
    p.add_argument("--output", default="compare.png", help="PNG to write (default compare.png)")
    p.add_argument("--x", choices=("episodes", "env-steps"), default="episodes",
                   help="episodes: adaptation curves by episodes of experience on the new "
                   "task (default); env-steps: return per step against meta-training env "
                   "steps, and a table of each run's env steps, gradient steps and wall time")
    p.set_defaults(func=_compare)
    p = _command(commands, "sweep", "train and evaluate N seeds (and a grid of overrides) of "
                 "a config as Ray Tune trials; resumes", common)
    p.add_argument("config", help="a YAML config, or a packaged one by name")
    p.add_argument("--seeds", type=count, required=True, help="seeds 1..N of every grid point")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key in every run")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="one run per value (several --grid: every combination)")
    p.add_argument("--root", required=True, help="directory of the sweep's run directories")
    p.add_argument("--workers", type=count,
                   help="runs at a time (default: the CPUs of the machine or cluster)")
    p.set_defaults(func=_sweep)
    p = _command(commands, "report", "aggregate evaluated runs over seeds (mean, median, IQM "
                 "with bootstrap CIs, P(X > Y), performance profiles; rliable)", common)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="evaluated runs; a sweep's seeds (NAME-seedK) are pooled per NAME, "
                        "other runs per algorithm and the settings that differ (as compare)")
    p.add_argument("--output", default="report.png", help="PNG to write (default report.png)")
    score = p.add_mutually_exclusive_group()
    score.add_argument("--point", type=count, default=-1,
                       help="the adaptation curve's point to score: k inner steps, or episode "
                            "k+1 of a trial (default -1: the last)")
    score.add_argument("--total", action="store_true",
                       help="score the sum over the adaptation curve (an RL² bandit trial's "
                            "total reward)")
    p.set_defaults(func=_report)
    for name, help_text, func in (("envs", "list the task families", _envs),
                                  ("algorithms", "list the algorithms", _algorithms),
                                  ("configs", "list the packaged configs", _configs)):
        p = _command(commands, name, help_text, common)
        p.add_argument("--format", choices=("auto", "table", "tsv", "json"), default="auto",
                       help="auto: a table on a terminal, tab-separated lines otherwise")
        p.set_defaults(func=func)
    return parser


def _interrupted(args: argparse.Namespace, interrupt: KeyboardInterrupt) -> int:
    """The line for Ctrl-C (exit code 130) or SIGTERM (143), and how to continue."""
    terminated = isinstance(interrupt, Terminated) or sigterm_received()
    how = "terminated" if terminated else "interrupted"
    run = args.command == "train" and (args.resume or args.run_dir)
    if run and not (Path(run) / "config.yaml").is_file():  # stopped before the run was made
        how += f"; no run was made in {run}: start it again"
    elif run:
        how += (f"; checkpoints written so far are kept: continue with fastadapt train "
                f"--resume {run}")
    elif args.command == "sweep":
        how += "; finished runs and checkpoints are kept: run the same sweep again to continue"
    print(f"fastadapt: {how}", file=sys.stderr)
    return 143 if terminated else 130


def _run(args: argparse.Namespace) -> int:
    """Run the command; its errors as one line and an exit code."""
    try:
        args.func(args)
        sys.stdout.flush()  # a full output fails here, not in Python's exit
    except FastAdaptError as err:
        if args.debug:
            raise
        print(f"fastadapt: error: {err}", file=sys.stderr)
        if isinstance(err, OutputError):
            discard_stdout()
        return 2
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (Terminated)
        return _interrupted(args, interrupt)
    except BrokenPipeError:  # output piped into a reader that stopped (| head): not an error
        discard_stdout()
        return 0
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastadapt`` console script; returns the exit code: 0, 2 for an
    error (one line), 130 for Ctrl-C, 143 for SIGTERM."""
    args = build_parser().parse_args(argv)
    if sys.stdout is None:  # started with its output closed (>&-): nowhere to report to
        print("fastadapt: error: standard output is closed; redirect it instead "
              "(> FILE, or > /dev/null to discard it)", file=sys.stderr)
        return 2
    output = sys.stdout
    sys.stdout = cast(TextIO, GuardedOutput(output))
    try:
        with sigterm_as_interrupt():
            return _run(args)
    finally:
        sys.stdout = output


if __name__ == "__main__":
    sys.exit(main())
