"""evaluate.py end to end on a tiny run folder: eval.json schema, PNGs with content, the CLI.

The run folder is built here from the real pieces (RunDir, config, the ready
TwoHypothesisCartPole posterior, collected labels, PPO agents trained briefly through the
posterior wrapper with the TensorBoard callbacks), in the layout train.py writes, so the
test takes seconds rather than a full training.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from matplotlib import image
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import ruagent  # noqa: F401  (registers the testbeds)
from ruagent.callbacks import GoodhartEvalCallback, RewardUncertaintyCallback
from ruagent.cli import config as config_lib
from ruagent.cli.evaluate import AGENT_METRICS, EVAL_SCHEMA, evaluate_run, main
from ruagent.cli.run_dir import RunDir
from ruagent.data import collect_transitions
from ruagent.envs.two_hypothesis_cartpole import TwoHypothesisCartPolePosterior
from ruagent.wrappers import VecRewardUncertaintyWrapper

REPO = Path(__file__).resolve().parents[2]
ENV_ID = "ruagent/TwoHypothesisCartPole-v0"
INTERVAL_KEYS = {"estimate", "low", "high", "n", "unit"}


def make_tiny_run(path: Path) -> RunDir:
    """A run folder as train.py lays it out, with agents trained for a couple of hundred steps."""
    config = config_lib.resolve(overrides=[
        f"env.id={ENV_ID}", "agent.algo=ppo", "agent.risk=cvar", "baselines=[mean, oracle]", "eval.episodes=3",
        f"runs_dir={path.parent}", f"name={path.name}",
    ])
    run = RunDir.create(path)
    run.write_config(config)
    posterior = TwoHypothesisCartPolePosterior()
    posterior.save(run.reward_model_path)
    labels = collect_transitions(gym.make(ENV_ID, variant="train"), 200, seed=0)
    labels[np.arange(160)].save(run.labels_path("train"))
    labels[np.arange(160, 200)].save(run.labels_path("heldout"))
    for agent, mode in (("risk", "cvar"), ("mean", "mean"), ("oracle", None)):
        venv = make_vec_env(ENV_ID, n_envs=2, seed=0, env_kwargs={"variant": "test"})
        callbacks = []
        if mode is not None:
            venv = VecRewardUncertaintyWrapper(venv, posterior, mode=mode, seed=0)
            callbacks = [RewardUncertaintyCallback(posterior),
                         GoodhartEvalCallback(gym.make(ENV_ID, variant="test"), posterior, eval_freq=64,
                                              n_eval_episodes=1)]
        model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0,
                    tensorboard_log=str(run.tensorboard_dir))
        if mode is not None:  # the oracle is only scored: an untrained policy is enough for regret's maths
            model.learn(192, callback=callbacks, tb_log_name=agent)
        run.model_path(agent).parent.mkdir(parents=True, exist_ok=True)
        model.save(run.model_path(agent))
    return run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> RunDir:
    return make_tiny_run(tmp_path_factory.mktemp("runs") / "tiny")


@pytest.fixture(scope="module")
def evaluated(tiny_run) -> dict:
    return evaluate_run(tiny_run.path, episodes=3, render_episodes=1, progress_bar=False)


def check_interval(value: dict, where: str) -> None:
    assert set(value) == INTERVAL_KEYS, (where, value)
    assert all(math.isfinite(value[k]) for k in ("estimate", "low", "high")), (where, value)
    assert value["low"] <= value["estimate"] <= value["high"], (where, value)
    assert value["n"] >= 1 and value["unit"] in ("episode", "seed", "transition"), (where, value)


def test_eval_json_schema(tiny_run, evaluated):
    written = json.loads(tiny_run.eval_path.read_text())
    assert written == json.loads(json.dumps(evaluated))  # the file is the returned dict
    assert written["schema"] == EVAL_SCHEMA and written["episodes"] == 3 and written["training_seed"] == 0
    assert isinstance(written["config_digest"], str)
    assert written["env"] == {"id": ENV_ID, "kwargs": {"variant": "test"}, "label_kwargs": {"variant": "train"}}
    assert written["oracle"] == {"source": "oracle agent"}
    assert set(written["agents"]) == {"risk", "mean", "oracle"}
    for agent, entry in written["agents"].items():
        assert set(entry["metrics"]) == set(AGENT_METRICS)
        for name, value in entry["metrics"].items():
            if name == "regret" and agent == "oracle":
                assert value is None
            else:
                check_interval(value, f"{agent}.{name}")
        per_episode = entry["per_episode"]
        assert set(per_episode) == set(AGENT_METRICS) - ({"regret"} if agent == "oracle" else set())
        for name, values in per_episode.items():
            assert len(values) == 3 and np.mean(values) == pytest.approx(entry["metrics"][name]["estimate"])
        assert set(entry["transfer"]) == {"train"}  # the testbed's other variant
        for name, value in entry["transfer"]["train"].items():
            check_interval(value, f"{agent}.transfer.{name}")
    posterior = written["posterior"]
    assert posterior["n_members"] == 2
    for kind in ("test_only", "hazard"):  # the test variant's right half is the hazard: random episodes find it
        check_interval(posterior["ood"][kind]["auroc"], f"ood.{kind}.auroc")
        assert posterior["ood"][kind]["n_train"] == 160 and posterior["ood"][kind]["n_pos"] > 0
    for split in ("heldout", "deployment"):
        calibration = posterior["calibration"][split]
        for name in ("nll", "coverage_50", "coverage_90", "abs_error"):
            check_interval(calibration[name], f"calibration.{split}.{name}")
    assert posterior["calibration"]["heldout"]["n_labels"] == 40
    report = posterior["calibration_report"]
    assert report["schema"] == "ruagent.calibration/1" and report["reference"] == "heldout"
    assert report["heldout_source"] == "labels/heldout.npz" and report["groups"]["heldout"]["n"] == 40
    assert set(report["groups"]) == {"heldout", "deployment", "hazard"}
    for name, group in report["groups"].items():
        assert group["n"] > 0, name  # random episodes in the test variant reach the hazard
        for key in ("coverage_50", "coverage_90", "width_50", "width_90", "nll"):
            check_interval(group["intervals"][key], f"calibration_report.{name}.{key}")
            assert group[key] == pytest.approx(group["intervals"][key]["estimate"])
        assert len(group["reliability"]["member"]) == len(report["levels"])
        if name != "heldout":
            check_interval(group["auroc_vs_reference"], f"calibration_report.{name}.auroc")


def test_metrics_agree_with_their_definitions(evaluated):
    for entry in evaluated["agents"].values():
        m = entry["metrics"]
        gap = m["proxy_return"]["estimate"] - m["true_return"]["estimate"]
        assert m["goodhart_gap"]["estimate"] == pytest.approx(gap)
        assert 0.0 <= m["side_effect_rate"]["estimate"] <= 1.0
    oracle = evaluated["agents"]["oracle"]["metrics"]["true_return"]["estimate"]
    for agent in ("risk", "mean"):
        m = evaluated["agents"][agent]["metrics"]
        assert m["regret"]["estimate"] == pytest.approx(oracle - m["true_return"]["estimate"])
    # Held-out labels come from the train variant, where hypothesis 0 (p = 0.95) is the truth:
    # the posterior mean is within 0.2 of each label and the 90 % interval covers them all.
    heldout = evaluated["posterior"]["calibration"]["heldout"]
    assert heldout["abs_error"]["high"] <= 0.2 + 1e-9
    assert heldout["coverage_90"]["estimate"] == 1.0


def test_plots_open_and_have_content(tiny_run, evaluated):
    names = {Path(p).name for p in evaluated["plots"]}
    assert names == {"metrics.png", "transfer.png", "trajectories.png", "goodhart.png", "reliability.png"}
    for path in evaluated["plots"]:
        pixels = image.imread(path)
        assert Path(path).parent == tiny_run.plots_dir
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels[..., :3].std() > 0.05, f"{path} is (nearly) blank"


def test_env_override_evaluates_in_that_env(tiny_run):
    result = evaluate_run(tiny_run.path, episodes=2, env_id="ruagent/TwoHypothesisCartPole-train-v0",
                          plots=False, write=False, progress_bar=False)
    assert result["env"]["id"] == "ruagent/TwoHypothesisCartPole-train-v0" and result["plots"] == []
    assert set(result["agents"]["risk"]["transfer"]) == {"test"}
    # In the train variant no step is a side effect (hypothesis 0 is the truth).
    assert all(e["metrics"]["side_effect_rate"]["estimate"] == 0.0 for e in result["agents"].values())


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "evaluate.py"), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env={**os.environ, "COLUMNS": "200"})


def test_cli_compares_runs_side_by_side(tiny_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_run.path, other)
    out = tmp_path / "compare"
    done = run_cli(str(tiny_run.path), str(other), "--episodes", "2", "--no-progress", "--render-episodes", "0",
                   "--out", str(out))
    assert done.returncode == 0, done.stderr
    for row in ("tiny/risk", "tiny/oracle", "other/mean", "pooled over 2 seeds", "AUROC hazard", "policy transfer"):
        assert row in done.stdout, (row, done.stdout)
    comparison = json.loads((out / "comparison.json").read_text())
    assert [Path(r["run"]).name for r in comparison["runs"]] == ["tiny", "other"]
    # Same config (a copy): one group of 2 seeds; its intervals resample per-run means.
    (group,) = comparison["pooled_seeds"]
    assert set(group["agents"]) == {"risk", "mean", "oracle"}
    pooled_true = group["agents"]["risk"]["true_return"]
    assert (pooled_true["unit"], pooled_true["n"]) == ("seed", 2)
    assert group["agents"]["oracle"]["regret"] is None
    assert image.imread(out / "comparison.png")[..., :3].std() > 0.05
    assert json.loads((other / "eval.json").read_text())["episodes"] == 2


def test_cli_refuses_a_folder_that_is_not_a_run(tmp_path):
    done = run_cli(str(tmp_path))
    assert done.returncode == 2
    assert "not a run folder" in done.stderr and "train.py" in done.stderr



def test_cli_refuses_a_bad_episode_count(tiny_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tiny_run.path), "--episodes", "0"])
    assert exit_info.value.code == 2 and "--episodes must be >= 1" in capsys.readouterr().err


def test_gridworld_regret_comes_from_the_exact_solver(tmp_path):
    from ruagent.reward_models.linear import BayesianLinearRewardModel

    lava = "ruagent/LavaWorld-v0"
    config = config_lib.resolve(overrides=[f"env.id={lava}", "agent.algo=ppo", "baselines=[]", f"runs_dir={tmp_path}",
                                         "name=lava"])
    run = RunDir.create(tmp_path / "lava")
    run.write_config(config)
    label_env = gym.make(lava, variant="train")
    posterior = BayesianLinearRewardModel(label_env.observation_space, label_env.action_space, n_members=6,
                                          features="env", seed=0)
    posterior.fit(collect_transitions(label_env, 300, seed=0), env=label_env)
    posterior.save(run.reward_model_path)
    run.model_path("risk").parent.mkdir(parents=True)
    PPO("MlpPolicy", make_vec_env(lava, n_envs=1, env_kwargs={"variant": "test"}), seed=0).save(run.model_path("risk"))

    result = evaluate_run(run.path, episodes=2, render_episodes=1, progress_bar=False)
    assert result["oracle"] == {"source": "solver"}
    test_env = gym.make(lava, variant="test")
    test_env.reset(seed=0)
    optimum = test_env.unwrapped.optimal_return()
    metrics_ = result["agents"]["risk"]["metrics"]
    assert metrics_["regret"]["estimate"] == pytest.approx(optimum - metrics_["true_return"]["estimate"])
    assert metrics_["regret"]["estimate"] >= 0.0
    assert result["posterior"]["calibration"]["heldout"] is None  # this run kept no held-out labels
    deployment = result["posterior"]["calibration"]["deployment"]
    assert deployment["n_labels"] >= 10 and 0.0 <= deployment["coverage_90"]["estimate"] <= 1.0
    report = result["posterior"]["calibration_report"]  # no held-out labels: fresh label-variant transitions
    assert report["heldout_source"].startswith("fresh") and report["groups"]["heldout"]["n"] >= 500
    assert {Path(p).name for p in result["plots"]} == {"metrics.png", "transfer.png", "trajectories.png",
                                                       "reliability.png"}


@pytest.mark.slow
def test_evaluate_a_real_train_py_run(tmp_path):
    """train.py (tiny LavaWorld budget) then evaluate.py, both as subprocesses; the TensorBoard tags are there."""
    from ruagent.callbacks import TAGS
    from ruagent.plots import read_scalars

    train = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "all", "--set", f"runs_dir={tmp_path}", "name=real",
         "labels.budget=400", "agent.total_timesteps=2048", "env.n_envs=4", "agent.hyperparams={n_steps: 128}",
         "baselines=[mean]", "eval.enabled=false", "progress_bar=false", "agent.checkpoint_freq=0"],
        capture_output=True, text=True, cwd=REPO, timeout=1200,
    )
    assert train.returncode == 0, train.stderr
    run = RunDir(tmp_path / "real")
    scalars = read_scalars(run.tensorboard_dir / "risk_1")
    for tag in TAGS:
        if tag.startswith(("ruagent/", "eval/")) and tag != "ruagent/reward_std":
            assert tag in scalars and np.isfinite(scalars[tag][1]).all(), tag
    assert "posterior/n_labels" in read_scalars(run.tensorboard_dir / "posterior")
    done = run_cli(str(run.path), "--episodes", "5", "--no-progress")
    assert done.returncode == 0, done.stderr
    result = json.loads(run.eval_path.read_text())
    assert result["oracle"]["source"] == "solver" and set(result["agents"]) == {"risk", "mean"}
    for agent in result["agents"].values():
        check_interval(agent["metrics"]["regret"], "regret")
    assert {Path(p).name for p in result["plots"]} >= {"metrics.png", "trajectories.png", "goodhart.png"}


def test_agents_load_without_running_pickled_code_from_their_zip(tiny_run, tmp_path):
    from ruagent.cli.evaluate import _load_agent
    from tests.reliability.test_files import TouchOnUnpickle, poisoned_copy

    copy = RunDir(shutil.copytree(tiny_run.path, tmp_path / "copy"))
    marker = tmp_path / "payload-ran"
    poisoned_copy(tiny_run.model_path("risk"), copy.model_path("risk"), "clip_range", TouchOnUnpickle(marker))
    config = copy.read_config()

    loaded = _load_agent(copy, "risk", config)

    assert not marker.exists()
    saved = PPO.load(tiny_run.model_path("risk"), device="cpu").policy.state_dict()
    assert all(np.array_equal(saved[name].numpy(), value.numpy()) for name, value in loaded.policy.state_dict().items())
    with pytest.raises(ValueError, match="not described by the run's config"):
        _load_agent(copy, "stranger", config)


def test_no_trajectory_plot_where_the_camera_follows_the_agent():
    from ruagent.cli.evaluate import _follows_the_agent, _render

    lava = gym.make("ruagent/LavaWorld-v0", variant="test")
    assert not _follows_the_agent(lava)
    pytest.importorskip("mujoco")
    cheetah = gym.make("ruagent/SpeedLimitCheetah-v0", variant="test")  # a subclass of HalfCheetahEnv
    assert _follows_the_agent(cheetah) and _follows_the_agent(gym.make("Hopper-v5"))

    class NeverCalled:
        def predict(self, *args, **kwargs):
            raise AssertionError("rendered an episode of a MuJoCo env")

    assert _render("Hopper-v5", {}, {"env": {"max_episode_steps": None}}, NeverCalled(), 2, 0) == ([], None)
