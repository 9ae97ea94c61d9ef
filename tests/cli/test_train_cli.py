"""train.py driven as a user drives it: a subprocess on tiny budgets."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.helpers import call_main

ROOT = Path(__file__).resolve().parents[2]
TRAIN = [sys.executable, str(ROOT / "train.py")]
#: a LavaWorld run small enough for the default suite (the real default trains 40k steps per agent)
TINY = ["labels.budget=300", "agent.total_timesteps=512", "agent.hyperparams={n_steps: 32, n_epochs: 2}",
        "env.n_envs=4", "agent.checkpoint_freq=256", "eval.episodes=3"]


def train(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*TRAIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def num_timesteps(model_zip: Path) -> int:
    """The step count SB3 stored in a saved model (its JSON "data" entry)."""
    with zipfile.ZipFile(model_zip) as archive:
        return int(json.loads(archive.read("data"))["num_timesteps"])


def rollout_total(total: int, n_steps: int, n_envs: int) -> int:
    """Where PPO stops for ``learn(total)``: whole rollouts of n_steps * n_envs."""
    return math.ceil(total / (n_steps * n_envs)) * n_steps * n_envs


# ---------------------------------------------------------------------------- help and config errors
def run_main(*args: str) -> tuple[int, str, str]:
    """train.py's main() in this process (cheaper than a subprocess for checks that stop early)."""
    from ruagent.cli.train import main

    return call_main(main, *args)


def test_help_lists_stages_and_every_config_key_with_its_default(tmp_path):
    from ruagent.cli.config import SCHEMA

    result = train("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for stage in ("fit-reward", "agent"):
        assert stage in result.stdout
    for key in SCHEMA:
        assert f"  {key}=" in result.stdout
    code, stage_help, _ = run_main("agent", "--help")
    assert code == 0
    assert "--reward-model" in stage_help and "--resume" in stage_help and "default 0" in stage_help


def test_bad_config_key_fails_with_status_2_as_a_subprocess(tmp_path):
    result = train("--set", "agent.alph=0.1", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "agent.alph" in result.stderr and "Did you mean 'agent.alpha'" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "must_contain"),
    [
        (["--set", "agent.risk=cvra"], ["agent.risk", "'cvar'", "entropic"]),
        (["--env", "CartPol-v1"], ["CartPol-v1", "CartPole-v1"]),
        (["--set", "agent.hyperparams.n_step=64"], ["agent.hyperparams.n_step", "n_steps"]),
        (["--env", "CartPole-v1", "--set", "reward_model.features=env"],
         ["reward_features", "reward_model.features=transition"]),
        (["--set", "labels.budget=2", "labels.heldout_fraction=0.9"],
         ["leaves none to fit the posterior on", "labels.budget * (1 - labels.heldout_fraction)"]),
        (["--set", "reward_model.family=ensemble", "reward_model.fit={epoch: 3}"],
         ["reward_model.fit.epoch", "epochs"]),
        (["--set", "reward_model.fit={epochs: 3}"], ["reward_model.fit.epochs", "none (remove the key)"]),
        (["--algo", "dqn", "--env", "Pendulum-v1", "--set", "env.label_kwargs={}", "env.deploy_kwargs={}",
          "reward_model.features=transition"], ["dqn", "Discrete"]),
        (["--algo", "ppo", "--set", "agent.risk=entropic"], ["entropic", "riskppo"]),
        (["--initial-fraction", "0.5"], ["labels.initial_fraction", "--labels preferences"]),
        (["agent"], ["--reward-model"]),
        (["--resume", "runs/none", "--seed", "3"], ["--resume takes its config"]),
    ],
)
def test_bad_config_fails_with_status_2_before_training(tmp_path, monkeypatch, args, must_contain):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_main(*args)
    assert code == 2, stderr
    for text in must_contain:
        assert text in stderr
    assert not (tmp_path / "runs").exists()  # nothing was created, let alone trained


def test_print_config_resolves_layers_and_reruns_from_its_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, printed, stderr = run_main("--config", "cartpole", "--seed", "4", "--set", "agent.alpha=0.3", "--name", "x",
                                     "--print-config")
    assert code == 0, stderr
    config = yaml.safe_load(printed)
    assert (config["seed"], config["agent"]["alpha"], config["env"]["id"]) == (4, 0.3, "CartPole-v1")
    (tmp_path / "again.yaml").write_text(printed)
    assert yaml.safe_load(run_main("--config", "again.yaml", "--print-config")[1]) == config
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- stages
def test_tiny_default_run_writes_the_run_folder_and_prints_its_table(tmp_path):
    result = train("--name", "tiny", "--no-progress", "--set", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "runs" / "tiny"
    for agent in ("risk", "mean"):
        assert num_timesteps(run / "agents" / agent / "model.zip") == rollout_total(512, 32, 4)
        assert any((run / "tensorboard").glob(f"{agent}_1/events.out.tfevents.*"))
    for name in ("config.yaml", "run.json", "reward_model.pt", "labels/train.npz", "labels/heldout.npz",
                 "eval.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    # the short summary: one row per agent with true return, side-effect rate and goodhart gap
    for text in ("risk", "mean", "true return", "side effects", "goodhart gap", f"run folder: {Path('runs/tiny')}"):
        assert text in result.stdout, text
    # config.yaml holds the resolved config, seed included: rerunning it gives the same config
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["seed"] == 0 and saved["labels"]["budget"] == 300 and saved["name"] == "tiny"


def test_refuses_to_overwrite_a_run_unless_forced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ("fit-reward", "--name", "same", "--no-progress", "--set", "labels.budget=50")
    assert run_main(*args)[0] == 0
    before = (tmp_path / "runs/same/reward_model.pt").stat().st_mtime_ns
    refused = train(*args, cwd=tmp_path)
    assert refused.returncode == 2 and "--force" in refused.stderr and "--resume" in refused.stderr
    assert (tmp_path / "runs/same/reward_model.pt").stat().st_mtime_ns == before
    assert run_main(*args, "--force")[0] == 0
    assert (tmp_path / "runs/same/reward_model.pt").stat().st_mtime_ns != before


def test_fit_reward_once_then_train_sb3_agents_on_any_gym_env(tmp_path):
    # the cartpole preset (CartPole-v1, no variants) with an ensemble on the featurised transition
    common = ("--config", "cartpole", "--no-progress", "--set", "reward_model.family=ensemble",
              "reward_model.n_members=3", "reward_model.fit={epochs: 3}")
    fitted = train("fit-reward", "--name", "posterior", *common, "labels.budget=200", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr
    agent = train("agent", "--reward-model", "runs/posterior", "--name", "a2c", "--algo", "a2c", *common,
                  "agent.total_timesteps=200", "agent.risk=worst", "baselines=[]", cwd=tmp_path)
    assert agent.returncode == 0, agent.stderr
    run = tmp_path / "runs" / "a2c"
    assert (run / "reward_model.pt").read_bytes() == (tmp_path / "runs/posterior/reward_model.pt").read_bytes()
    assert (run / "labels/heldout.npz").is_file()
    assert num_timesteps(run / "agents/risk/model.zip") >= 200
    assert not (run / "eval.json").exists()  # the agent stage does not evaluate


def test_preferences_asked_during_training_refine_the_saved_posterior(tmp_path):
    """Christiano et al.'s schedule: half the budget before training, half from the risk agent's rollouts."""
    import numpy as np

    from ruagent import load_reward_model
    from ruagent.cli import factory
    from ruagent.cli.run_dir import RunDir
    from ruagent.preferences.fit import LinearPreferenceFitter
    from ruagent.preferences.session import LabelLog

    result = train("--name", "online", "--no-progress", "--labels", "preferences", "--budget", "12",
                   "--initial-fraction", "0.5", "--set", "labels.segment_length=10", "labels.update_every=128",
                   *TINY[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fitted on 6 preference labels" in result.stderr
    assert "refitted on 12 preference labels (12 asked)" in result.stderr
    run = RunDir(tmp_path / "runs/online")
    log = LabelLog.load(run.labels_path("preferences"))
    assert len(log) == 12 and np.sum(log.timesteps < 0) == 6  # 6 before training
    assert np.all(log.timesteps[6:] > 0) and np.all(log.timesteps[6:] <= 512)  # 6 during the risk agent's run
    # the saved posterior holds all 12: the up-front fit on 6, then the 6 from training on top
    config = run.read_config()
    env = factory.make_env(config, config["env"]["label_kwargs"])
    pairs, labels = log.labelled()
    reference = factory.make_reward_model(config, env, "cpu")
    LinearPreferenceFitter(reference).fit(pairs[np.arange(6)], labels[:6])
    fitter = LinearPreferenceFitter(reference)
    fitter.n_absorbed = 6
    fitter.fit(pairs, labels)
    saved = load_reward_model(run.reward_model_path, env=env)
    np.testing.assert_allclose(saved.posterior_precision, reference.posterior_precision, rtol=1e-5)
    assert not (run.path / "reward_model.refitted.pt").exists()

    # a kill between the agent's model.zip and the rename of the refitted posterior: resuming finishes the commit
    from ruagent.cli import stages

    refitted_bytes = run.reward_model_path.read_bytes()
    (run.path / "reward_model.refitted.pt").write_bytes(refitted_bytes)
    factory.make_reward_model(config, env, "cpu").save(run.reward_model_path)  # the state before the rename
    spec = next(s for s in factory.agent_specs(config) if s.name == "risk")
    stages.train_one_agent(config, run, spec)  # done already: only completes the commit
    assert run.reward_model_path.read_bytes() == refitted_bytes
    assert not (run.path / "reward_model.refitted.pt").exists()


# ---------------------------------------------------------------------------- crash and resume
def test_resume_after_sigkill_continues_from_the_checkpoint_to_the_same_total(tmp_path):
    total, n_steps, n_envs = 3000, 32, 4
    args = ["--name", "crash", "--no-progress", "--set", "labels.budget=200", f"agent.total_timesteps={total}",
            f"agent.hyperparams={{n_steps: {n_steps}, n_epochs: 2}}", f"env.n_envs={n_envs}",
            "agent.checkpoint_freq=256", "baselines=[]", "eval.enabled=false"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    process = subprocess.Popen([*TRAIN, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "runs/crash/agents/risk/checkpoints"
    deadline = time.monotonic() + 120
    try:
        while not len(list(checkpoints.glob("step_*.zip"))) >= 2:
            assert process.poll() is None, "training ended before it could be killed; raise the budget"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = max(int(p.stem.split("_")[1]) for p in checkpoints.glob("step_*.zip"))
    assert killed_at < total and not (tmp_path / "runs/crash/agents/risk/model.zip").exists()

    resumed = train("--resume", "runs/crash", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "reusing" in resumed.stderr  # the posterior was not refitted
    assert "resuming from" in resumed.stderr and f"step {killed_at}" in resumed.stderr
    assert f"for {total - killed_at} steps" in resumed.stderr  # the remaining steps only
    final = tmp_path / "runs/crash/agents/risk/model.zip"
    assert num_timesteps(final) == rollout_total(total, n_steps, n_envs)
    assert json.loads((tmp_path / "runs/crash/run.json").read_text())["status"] == "finished"


def test_a_human_labeller_sees_gridworld_segments_before_and_during_training(tmp_path):
    args = ["--name", "human", "--no-progress", "--labels", "preferences", "--labeller", "human", "--budget", "4",
            "--initial-fraction", "0.5", "--set", "labels.segment_length=3", "labels.update_every=128",
            "agent.total_timesteps=256", "agent.hyperparams={n_steps: 32, n_epochs: 1}", "env.n_envs=4",
            "baselines=[]", "eval.enabled=false"]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([*TRAIN, *args], cwd=tmp_path, env=env, input="1\n2\n" * 4, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    shown = result.stdout.split("=== pair ")[1:]
    assert len(shown) == 4 and all("first t=0" in pair and "second t=0" in pair for pair in shown)  # ansi frames
    # the first two come from the training map, which has no lava; the last two from the agent's deployment map
    assert not any("L" in pair.split("Which is better")[0] for pair in shown[:2])
    assert all("LLL" in pair for pair in shown[2:])
    assert "refitted on 4 preference labels" in result.stderr


def test_resume_keeps_the_preferences_asked_during_training_before_the_kill(tmp_path):
    import numpy as np

    from ruagent.preferences.session import LabelLog

    total, n_steps, n_envs, budget = 3000, 32, 4, 20
    args = ["--name", "crash", "--no-progress", "--labels", "preferences", "--budget", str(budget),
            "--initial-fraction", "0.25", "--set", "labels.segment_length=10", "labels.update_every=256",
            f"agent.total_timesteps={total}", f"agent.hyperparams={{n_steps: {n_steps}, n_epochs: 2}}",
            f"env.n_envs={n_envs}", "agent.checkpoint_freq=256", "baselines=[]", "eval.enabled=false"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    process = subprocess.Popen([*TRAIN, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    session = tmp_path / "runs/crash/labels/preferences.npz"
    deadline = time.monotonic() + 120
    try:  # kill once labels from the agent's rollouts are saved, well before the end of training
        while not (session.is_file() and np.any(LabelLog.load(session, autosave=False).timesteps > 0)):
            assert process.poll() is None, "training ended before it could be killed; raise the budget"
            assert time.monotonic() < deadline, "no label asked during training within 120 s"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = LabelLog.load(session, autosave=False)
    assert len(before) < budget and not (tmp_path / "runs/crash/agents/risk/model.zip").exists()

    resumed = train("--resume", "runs/crash", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = LabelLog.load(session, autosave=False)
    assert len(after) == budget and f"refitted on {budget} preference labels" in resumed.stderr
    n = len(before)  # every answer given before the kill is still there, unchanged, and not asked again
    np.testing.assert_array_equal(after.labels[:n], before.labels)
    np.testing.assert_array_equal(after.timesteps[:n], before.timesteps)
    np.testing.assert_array_equal(after.pairs.obs[:n], before.pairs.obs)
    assert np.all(after.timesteps[n:] >= before.timesteps.max())


# ---------------------------------------------------------------------------- the real default
@pytest.mark.slow
def test_full_default_run_avoids_lava_where_the_mean_agent_does_not(tmp_path):
    started = time.monotonic()
    result = train("--name", "default", "--no-progress", cwd=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr
    assert "goodhart gap" in result.stdout and "run folder" in result.stdout
    print(f"full default run: {time.monotonic() - started:.0f} s\n{result.stdout}")
    agents = json.loads((tmp_path / "runs/default/eval.json").read_text())["agents"]
    risk, mean = agents["risk"]["metrics"], agents["mean"]["metrics"]
    # IRD's point: lava never appears in the labels, so only the risk-averse agent stays off it
    assert risk["side_effect_rate"]["estimate"] < mean["side_effect_rate"]["estimate"] - 0.5
    assert risk["true_return"]["estimate"] > mean["true_return"]["estimate"] + 1.0
    assert risk["goodhart_gap"]["estimate"] < mean["goodhart_gap"]["estimate"]


@pytest.mark.slow
def test_cartpole_preset_balances_for_500_steps(tmp_path):
    """The cartpole preset at its own budget: both agents reach a true return of at least 450 (of 500)."""
    result = train("--config", "cartpole", "--name", "cp", "--no-progress", cwd=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr
    agents = json.loads((tmp_path / "runs/cp/eval.json").read_text())["agents"]
    for agent in ("risk", "mean"):
        assert agents[agent]["metrics"]["true_return"]["estimate"] >= 450, (agent, result.stdout)


def test_label_flags_set_the_preference_keys():
    code, out, _ = run_main("--labels", "preferences", "--budget", "200", "--query", "disagreement",
                            "--labeller", "human", "--print-config")
    assert code == 0
    labels = yaml.safe_load(out)["labels"]
    assert (labels["kind"], labels["budget"], labels["query"], labels["labeller"]) == (
        "preferences", 200, "disagreement", "human")
    code, _, err = run_main("--query", "telepathy", "--print-config")
    assert code == 2 and "disagreement" in err  # argparse names the valid choices


def test_a_bpref_teacher_answers_every_preference_of_the_run(tmp_path):
    """labels.teacher=equal with a scale above any return gap: every answer, before and during training, is 0.5."""
    import numpy as np

    from ruagent.cli.run_dir import RunDir
    from ruagent.preferences.session import LabelLog

    result = train("--name", "teacher", "--no-progress", "--labels", "preferences", "--budget", "8",
                   "--initial-fraction", "0.5", "--set", "labels.segment_length=10", "labels.update_every=128",
                   "labels.teacher=equal", "labels.teacher_scale=1000", *TINY[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    log = LabelLog.load(RunDir(tmp_path / "runs/teacher").labels_path("preferences"))
    assert len(log) == 8 and np.sum(log.timesteps > 0) == 4  # half of them asked during training
    np.testing.assert_array_equal(log.labelled()[1], np.full(8, 0.5, dtype=np.float32))
