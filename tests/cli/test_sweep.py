"""train.py sweep: a grid of ordinary runs as Ray Tune trials, pooled over seeds.

The Ray tests share one module-scoped local Ray instance (2 CPUs) and one 2 x 2 sweep on tiny
budgets; they are skipped where the ``ray`` extra is not installed (CI installs it).
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import yaml

from ruagent.cli import config as config_lib
from ruagent.cli.config import ConfigError
from ruagent.cli.sweep import expand_trials, load_sweep

#: LavaWorld runs small enough for the default suite: one risk agent, a few PPO updates, 2 eval episodes
TINY = {"labels.budget": 100, "agent.total_timesteps": 128, "agent.hyperparams": {"n_steps": 32, "n_epochs": 1},
        "env.n_envs": 2, "agent.checkpoint_freq": 0, "eval.episodes": 2, "baselines": []}
#: the 2 x 2 grid: seeds x (risk measure with its level)
GRID = {"seed": [0, 1], "risk": [{"agent.risk": "cvar", "agent.alpha": 0.2}, {"agent.risk": "worst"}]}
TRIALS = ["seed=0_risk=cvar-0.2", "seed=0_risk=worst", "seed=1_risk=cvar-0.2", "seed=1_risk=worst"]


def write_sweep(folder: Path, **spec) -> Path:
    path = folder / "sweep.yaml"
    spec = {"name": "tiny", "config": "lavaworld", "set": TINY, "grid": GRID, **spec}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))  # axis order matters: the first varies slowest
    return path


def sweep_cli(*args: str) -> tuple[int, str, str]:
    """``train.py sweep ARGS`` in this process (so it joins the test's Ray instance)."""
    from ruagent.cli.train import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(["sweep", *args])
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------- without Ray
def test_without_the_extra_the_command_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError, as without the extra
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    code, _, err = sweep_cli("--config", str(write_sweep(tmp_path)), "--storage", str(tmp_path / "sweeps"))
    assert code == 2
    assert 'pip install "ruagent[ray]"' in err
    assert not (tmp_path / "sweeps").exists()


def test_grid_is_the_product_of_axes_with_bundles_and_each_trial_config_is_resolved(tmp_path):
    spec, folder = load_sweep(write_sweep(tmp_path, grid={**GRID, "labels.budget": [100, 150]}))
    trials = expand_trials(spec, folder, tmp_path / "runs")
    assert len(trials) == 2 * 2 * 2 and len({t.name for t in trials}) == 8
    assert [t.params["seed"] for t in trials] == [0] * 4 + [1] * 4  # first axis slowest
    for trial in trials:
        config = trial.config
        assert config["seed"] == trial.params["seed"]
        assert config["labels"]["budget"] == trial.params["labels.budget"]
        assert config["agent"]["risk"] == trial.params["risk"]["agent.risk"]
        assert config["agent"]["alpha"] == trial.params["risk"].get("agent.alpha")  # null for worst
        assert config["agent"]["hyperparams"] == {"n_steps": 32, "n_epochs": 1}  # `set:` reaches every trial
        assert config["progress_bar"] is False and trial.run_dir == tmp_path / "runs" / trial.name
        assert config_lib.validate(config) == config


def test_a_config_axis_swaps_the_base_config_per_trial(tmp_path):
    spec, folder = load_sweep(write_sweep(tmp_path, grid={"config": ["lavaworld", "distributional_shift"]}))
    trials = expand_trials(spec, folder, tmp_path / "runs")
    assert [t.name for t in trials] == ["config=lavaworld", "config=distributional-shift"]
    assert [t.config["env"]["id"] for t in trials] == ["ruagent/LavaWorld-v0", "ruagent/DistributionalShift-v0"]
    assert all(t.config["labels"]["budget"] == TINY["labels.budget"] for t in trials)


@pytest.mark.parametrize(
    ("spec", "must_contain"),
    [
        ({"grid": {"agent.risk": ["cvar", "worst"], "agent.alpha": [0.1]}},
         ["trial risk=worst_alpha=0.1", "agent.alpha is not used by agent.risk='worst'", "axis of bundles"]),
        ({"grid": {"agent.alpah": [0.1, 0.2]}}, ["must be a bundle", "Did you mean 'agent.alpha'"]),
        ({"grid": {"seed": [0]}, "resorces": {"cpu": 1}}, ["unknown sweep key 'resorces'", "Did you mean 'resources'"]),
        ({"grid": {"seed": []}}, ["non-empty list"]),
        ({"grid": {"seed": [0]}, "name": "../elsewhere"}, ["plain folder name"]),
        ({"grid": {"config": ["lavaworld", "no_such_preset"]}},
         ["trial config=no-such-preset", "Choose one of: cartpole"]),
        ({"grid": {"seed": [0]}, "set": {"eval.enabled": False}}, ["eval.enabled=false"]),
    ],
)
def test_bad_sweep_files_stop_with_status_2_before_anything_runs(tmp_path, spec, must_contain):
    code, _, err = sweep_cli("--config", str(write_sweep(tmp_path, **spec)), "--storage", str(tmp_path / "s"),
                             "--dry-run")
    assert code == 2
    for text in must_contain:
        assert text in err
    assert not (tmp_path / "s").exists()


def test_the_shipped_example_is_a_sweep_not_a_run_preset(tmp_path):
    code, out, _ = sweep_cli("--config", "sweep_example", "--storage", str(tmp_path), "--dry-run")
    assert code == 0
    spec, _ = load_sweep("sweep_example")
    assert len(out.splitlines()) == np.prod([len(values) for values in spec["grid"].values()])
    assert "sweep_example" not in config_lib.preset_names()
    with pytest.raises(ConfigError, match="sweep_example"):
        config_lib.load_config_file("sweep_example")


def test_resume_refuses_a_trial_whose_run_folder_holds_another_config(tmp_path):
    """A finished trial is only kept if it ran what the sweep file now asks for (checked before Ray starts)."""
    pytest.importorskip("ray")
    from ruagent.cli.run_dir import RunDir

    sweep_file = write_sweep(tmp_path)
    spec, folder = load_sweep(sweep_file)
    sweep_dir = tmp_path / "sweeps" / "tiny"
    trial = expand_trials(spec, folder, sweep_dir / "runs")[0]
    (sweep_dir / "sweep.yaml").parent.mkdir(parents=True)
    (sweep_dir / "sweep.yaml").write_text(sweep_file.read_text())
    run = RunDir.create(trial.run_dir)
    run.write_config({**trial.config, "labels": {**trial.config["labels"], "budget": 999}})
    code, _, err = sweep_cli("--config", str(sweep_file), "--storage", str(tmp_path / "sweeps"), "--resume")
    assert code == 2
    assert f"trial {trial.name} ran with other values of labels.budget" in err
    assert not (sweep_dir / "ray").exists() and not (sweep_dir / "results.json").exists()


# ---------------------------------------------------------------------------- on a local Ray instance
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def finished_sweep(local_ray, tmp_path_factory):
    """The 2 x 2 sweep, run once: (its sweep folder, the sweep file, the command's exit status and output)."""
    folder = tmp_path_factory.mktemp("sweep")
    sweep_file = write_sweep(folder)
    code, out, err = sweep_cli("--config", str(sweep_file), "--storage", str(folder / "sweeps"), "--no-progress")
    return folder / "sweeps" / "tiny", sweep_file, code, out + err


def test_every_trial_of_a_2x2_grid_is_an_ordinary_run_folder(finished_sweep):
    sweep_dir, _, code, output = finished_sweep
    assert code == 0, output
    assert sorted(p.name for p in (sweep_dir / "runs").iterdir()) == sorted(TRIALS)
    for name in TRIALS:
        run = sweep_dir / "runs" / name
        config = yaml.safe_load((run / "config.yaml").read_text())
        meta = json.loads((run / "run.json").read_text())
        assert meta["status"] == "finished" and meta["stage"] == "all"
        assert config["seed"] == meta["trial_params"]["seed"] == int(name[5])
        assert config["agent"]["risk"] == ("cvar" if "cvar" in name else "worst")
        assert config["agent"]["alpha"] == (0.2 if "cvar" in name else None)
        for path in ("reward_model.pt", "labels/train.npz", "agents/risk/model.zip", "eval.json",
                     "plots/metrics.png"):
            assert (run / path).is_file(), f"{name}: {path} missing"
        assert list((run / "tensorboard" / "risk_1").glob("events.out.tfevents.*"))  # TensorBoard per trial
        # each trial ran as a Ray Tune trial and reported its evaluation
        tune_results = list((sweep_dir / "ray").glob(f"tune-*/{name}/result.json"))
        assert len(tune_results) == 1
        reported = json.loads(tune_results[0].read_text().splitlines()[-1])
        evaluated = json.loads((run / "eval.json").read_text())
        assert reported["risk/true_return"] == evaluated["agents"]["risk"]["metrics"]["true_return"]["estimate"]


def test_the_sweep_table_pools_each_grid_point_over_its_seeds(finished_sweep):
    sweep_dir, _, code, output = finished_sweep
    assert code == 0, output
    results = json.loads((sweep_dir / "results.json").read_text())
    assert results["schema"] == "ruagent.sweep/1"
    assert [t["status"] for t in results["trials"]] == ["finished"] * 4
    groups = {group["label"]: group for group in results["groups"]}
    assert sorted(groups) == ["risk=cvar-0.2", "risk=worst"]
    for label, group in groups.items():
        assert len(group["runs"]) == 2 and all(label.split("=", 1)[1] in run for run in group["runs"])
        per_seed_means = [np.mean(json.loads((Path(run) / "eval.json").read_text())["agents"]["risk"]["per_episode"]
                                  ["true_return"]) for run in group["runs"]]
        true_return = group["agents"]["risk"]["true_return"]
        assert true_return["unit"] == "seed" and true_return["n"] == 2
        assert true_return["estimate"] == pytest.approx(np.mean(per_seed_means))
        assert true_return["low"] <= true_return["estimate"] <= true_return["high"]
    table = (sweep_dir / "table.txt").read_text()
    assert "risk=cvar-0.2" in table and "risk=worst" in table and "true return" in table
    assert "risk=worst" in output  # and it was printed
    csv_rows = (sweep_dir / "results.csv").read_text().splitlines()
    assert csv_rows[0].startswith("grid_point,agent,seeds,metric,estimate,low,high")
    assert any(row.startswith("risk=worst,risk,2,true_return,") for row in csv_rows)
    comparison = json.loads((sweep_dir / "comparison.json").read_text())
    assert len(comparison["runs"]) == 4 and len(comparison["pooled_seeds"]) == 2
    for figure in ("comparison.png", "plots/sweep.png"):
        assert (sweep_dir / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_resumed_sweep_reruns_only_unfinished_trials_and_retries_failures(finished_sweep, tmp_path):
    sweep_dir, sweep_file, code, output = finished_sweep
    assert code == 0, output
    # a moved copy of the finished sweep, so the other tests keep theirs
    moved = tmp_path / "sweeps" / "tiny"
    shutil.copytree(sweep_dir, moved)
    runs = moved / "runs"
    shutil.rmtree(runs / TRIALS[0])  # killed before it wrote anything
    shutil.rmtree(runs / TRIALS[1])
    (runs / TRIALS[1]).write_text("not a folder")  # fails on every attempt
    kept = {path: path.stat().st_mtime_ns for name in TRIALS[2:] for path in (runs / name).rglob("*")}

    code, out, err = sweep_cli("--config", str(sweep_file), "--storage", str(tmp_path / "sweeps"), "--no-progress")
    assert code == 2 and "--resume" in err  # an existing sweep is never overwritten silently

    code, out, err = sweep_cli("--config", str(sweep_file), "--storage", str(tmp_path / "sweeps"), "--resume",
                               "--max-failures", "1", "--no-progress")
    assert code == 1, out + err
    assert "2 finished already, 2 to run" in err
    assert f"trial {TRIALS[1]} failed; retrying" in err and f"did not finish: {TRIALS[1]}" in out
    trials = {t["name"]: t for t in json.loads((moved / "results.json").read_text())["trials"]}
    assert trials[TRIALS[1]]["error"].startswith("NotADirectoryError: ")  # the trial's own error, not Ray's wrapper
    statuses = {name: t["status"] for name, t in trials.items()}
    assert statuses == {TRIALS[0]: "finished", TRIALS[1]: "failed", TRIALS[2]: "finished earlier",
                        TRIALS[3]: "finished earlier"}
    assert json.loads((runs / TRIALS[0] / "run.json").read_text())["status"] == "finished"
    # the finished trials were not rerun: not one of their files was rewritten
    assert {path: path.stat().st_mtime_ns for path in kept} == kept
    launches = sorted((moved / "ray").glob("tune-*"))
    assert sorted(p.name for p in launches[-1].iterdir() if p.is_dir()) == sorted(TRIALS[:2])
    # the table holds what finished: the worst grid point now has a single seed
    groups = {group["label"]: group for group in json.loads((moved / "results.json").read_text())["groups"]}
    assert len(groups["risk=cvar-0.2"]["runs"]) == 2 and len(groups["risk=worst"]["runs"]) == 1


@pytest.mark.slow
def test_address_joins_an_existing_ray_cluster(tmp_path):
    """`--address auto` hands the trials to the Ray cluster of this node (`ray start --head`), as docs/sweeps.md
    tells cluster users to do."""
    import os
    import signal
    import socket
    import subprocess
    import tempfile
    import time

    pytest.importorskip("ray")
    with socket.socket() as probe:  # a free port for the head's GCS
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray_cli = Path(sys.executable).parent / "ray"
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        for line in head.stdout:  # the head is up once it says it blocks
            if "will now block" in line:
                break
        time.sleep(2)
        sweep_file = write_sweep(tmp_path, grid={"seed": [0]})
        result = subprocess.run(
            [sys.executable, str(Path(__file__).resolve().parents[2] / "train.py"), "sweep", "--config",
             str(sweep_file), "--address", "auto", "--storage", str(tmp_path / "sweeps"), "--no-progress"],
            capture_output=True, text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 of 1 trials finished" in result.stdout
        meta = json.loads((tmp_path / "sweeps" / "tiny" / "runs" / "seed=0" / "run.json").read_text())
        assert meta["status"] == "finished"
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        head.wait(timeout=60)
        # unlike `ray stop`, a signalled head leaves its address behind for `--address auto`; remove ours
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if current.is_file() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()
