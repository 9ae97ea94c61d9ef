"""train.py with the off-policy risk agents: agent.algo=riskdqn / risksac build, train and save,
with the SB3 algorithm of the same family (DQN / SAC, wrapper mode mean) as their mean baseline."""

from __future__ import annotations

import pytest

from ruagent.cli import config as config_lib
from ruagent.cli import factory
from tests.cli.test_train_cli import num_timesteps, run_main


@pytest.mark.parametrize(("algo", "mean_algo", "oracle_algo"), [("riskdqn", "dqn", "dqn"), ("risksac", "sac", "sac"),
                                                                 ("riskppo", "ppo", "ppo")])
def test_risk_agents_take_their_sb3_family_as_mean_and_oracle_baselines(algo, mean_algo, oracle_algo):
    config = config_lib.resolve(None, [f"agent.algo={algo}", "agent.risk=entropic", "baselines=[mean, oracle]"])
    specs = {spec.name: spec for spec in factory.agent_specs(config)}
    assert specs["risk"].algo == algo and specs["risk"].risk == ("entropic", {})
    assert specs["risk"].mode == "mean"  # the scalar reward is only logged
    assert (specs["mean"].algo, specs["mean"].mode, specs["mean"].risk) == (mean_algo, "mean", None)
    assert (specs["oracle"].algo, specs["oracle"].mode) == (oracle_algo, None)


def test_config_checks_name_the_action_space(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_main("--algo", "riskdqn", "--env", "Pendulum-v1", "--set", "env.label_kwargs={}",
                               "env.deploy_kwargs={}", "reward_model.features=transition")
    assert code == 2 and "riskdqn" in stderr and "Discrete" in stderr
    code, _, stderr = run_main("--algo", "risksac", "--config", "cartpole")
    assert code == 2 and "risksac" in stderr and "Box" in stderr


def test_riskdqn_config_fits_the_posterior_and_trains_the_risk_and_mean_agents(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ("--config", "cartpole", "--no-progress", "--set", "reward_model.family=ensemble",
              "reward_model.n_members=3", "reward_model.fit={epochs: 3}")
    code, _, stderr = run_main("fit-reward", "--name", "posterior", *common, "labels.budget=100")
    assert code == 0, stderr
    code, _, stderr = run_main(
        "agent", "--reward-model", "runs/posterior", "--name", "dqn", "--algo", "riskdqn", *common,
        "agent.total_timesteps=200", "agent.risk=cvar", "agent.alpha=0.5", "baselines=[mean]",
        "agent.hyperparams={learning_starts: 50, buffer_size: 1000, batch_size: 16}",
    )
    assert code == 0, stderr
    run = tmp_path / "runs" / "dqn"
    for agent in ("risk", "mean"):
        assert num_timesteps(run / "agents" / agent / "model.zip") >= 200  # whole steps of all envs
    assert "agent risk: riskdqn for 200 steps" in stderr and "agent mean: dqn for 200 steps" in stderr
