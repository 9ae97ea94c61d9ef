"""The experiment's testbeds, posteriors, hyperparameter files, KL-PPO jobs and the two procedures
around them (β selection, oracle solvability), at tiny budgets: wiring and invariants, not science."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ruagent.experiments import kl_selection, solvability
from ruagent.experiments.agents import (
    AGENTS,
    DEFAULT_RUN_AGENTS,
    KL_SWEEP,
    TIER1_AGENTS,
    TIER3_AGENTS,
    AgentSpec,
    agents_for,
    reference_agent,
    resolve_algo,
)
from ruagent.experiments.headline import plan_jobs
from ruagent.experiments.runner import Budget, Job, run_job
from ruagent.experiments.testbeds import (
    HYPERPARAMS_DIR,
    POSTERIORS,
    SWEEP_POSTERIORS,
    TESTBEDS,
    build_posterior,
    load_hyperparams,
)

ROOT = Path(__file__).resolve().parents[2]


def test_tier_one_is_issue_15s_agent_list_and_every_agent_has_a_spec():
    assert TIER1_AGENTS == ("oracle", "naive", "cvar", "worst", "lcb", "kl-ppo", "sample")
    assert set(TIER1_AGENTS) <= set(AGENTS)
    assert (AGENTS["kl-ppo"].algo, AGENTS["kl-ppo"].mode) == ("klppo", "mean")
    assert (AGENTS["sample"].mode, AGENTS["reference"].train_variant) == ("sample", "label")


def test_tier_three_sweeps_kl_around_the_chosen_beta_and_runs_only_when_named():
    assert set(TIER3_AGENTS) <= set(AGENTS) and {"broil", "kl-ppo", "naive"} <= set(TIER3_AGENTS)
    sweep = [AGENTS[f"kl-ppo-{beta:g}"] for beta in KL_SWEEP]
    assert [spec.algo_kwargs["kl_coef"] for spec in sweep] == list(KL_SWEEP) and 1.0 not in KL_SWEEP
    assert all(spec.algo == "klppo" for spec in sweep)
    assert not {spec.name for spec in sweep} & set(DEFAULT_RUN_AGENTS)
    assert set(TIER1_AGENTS) <= set(DEFAULT_RUN_AGENTS)
    assert all(spec.name in agents_for(TESTBEDS["lava-canonical"]) for spec in sweep)  # runnable when named
    with pytest.raises(ValueError, match="kl_coef is KL-PPO's setting"):
        AgentSpec("bad", "ppo", "mean", "PPO with a KL setting", algo_kwargs={"kl_coef": 1.0})


def test_kl_ppos_reference_is_trained_in_the_labelling_variant():
    for name, spec in TESTBEDS.items():
        expected = "oracle" if spec.label_kwargs == spec.deploy_kwargs else "reference"
        assert reference_agent(spec) == expected, name
    assert reference_agent(TESTBEDS["lava-canonical"]) == "reference"
    assert reference_agent(TESTBEDS["distributional-shift"]) == "oracle"  # it trains in the training variant


def _testbeds_using(algo: str) -> list[str]:
    """The testbeds on which some agent trains with ``algo`` (or with its base: ppo.yaml / sac.yaml)."""
    def base(resolved: str) -> str:
        return "sac" if resolved in ("sac", "risksac") else "ppo"

    resolved = {(name, resolve_algo(AGENTS[agent], spec)) for name, spec in TESTBEDS.items()
                for agent in agents_for(spec)}
    used = resolved | {(name, base(a)) for name, a in resolved}
    return [name for name in TESTBEDS if (name, algo) in used]


@pytest.mark.parametrize("algo", ["ppo", "riskppo", "klppo", "sac", "risksac"])
def test_every_testbed_has_an_entry_in_every_hyperparameter_file_its_agents_use(algo):
    from stable_baselines3 import PPO, SAC

    known_args = set({"ppo": PPO, "sac": SAC}.get(algo, PPO).__init__.__code__.co_varnames)
    assert _testbeds_using(algo), f"no testbed uses {algo}"
    for name in _testbeds_using(algo):
        entry = load_hyperparams(algo, name)
        if algo in ("ppo", "sac"):
            assert entry and set(entry) <= known_args, name
        if algo == "klppo":
            assert entry["kl_coef"] in entry["kl_coef_candidates"] and len(entry["kl_coef_candidates"]) == 3
            if entry["selected_by"] is not None:  # a selection is stored and matches the committed value
                assert json.loads((ROOT / entry["selected_by"]).read_text())["chosen"] == entry["kl_coef"]
    with pytest.raises(KeyError, match="no entry for testbed"):
        load_hyperparams(algo, "no-such-testbed")


def test_budget_merges_the_algorithms_extras_over_the_shared_ppo_settings():
    spec = TESTBEDS["lava-canonical"]
    ppo, kl = Budget().hyperparams(spec), Budget().hyperparams(spec, "klppo")
    assert ppo == spec.hyperparams == load_hyperparams("ppo", "lava-canonical")
    assert kl == {**ppo, "kl_coef": load_hyperparams("klppo", "lava-canonical")["kl_coef"],
                  "init_from_reference": False}
    assert Budget(tiny=True).hyperparams(spec, "riskppo")["n_steps"] == 32
    assert (HYPERPARAMS_DIR / "ppo.yaml").is_file()
    cheetah = TESTBEDS["speed-limit-cheetah"]
    assert Budget().hyperparams(cheetah, "risksac") == {**load_hyperparams("sac", cheetah.name),
                                                        **load_hyperparams("risksac", cheetah.name)}
    assert Budget().hyperparams(cheetah, "riskppo") == load_hyperparams("ppo", cheetah.name)  # cvar-ppo's
    assert "n_steps" not in Budget(tiny=True).hyperparams(cheetah, "sac")


def test_agent_roles_map_onto_the_off_policy_family():
    """On SpeedLimitCheetah the oracle is SAC, the mean agent SAC on the analytic posterior mean (as PPO on the
    on-policy testbeds), the risk agents RiskSAC with their measure, single SAC on one model; cvar-ppo stays
    RiskPPO."""
    cheetah, lava = TESTBEDS["speed-limit-cheetah"], TESTBEDS["lava-canonical"]
    expected = {"oracle": "sac", "naive": "sac", "cvar": "risksac", "worst": "risksac", "single": "sac",
                "sample": "sac", "lcb": "sac", "cvar-ppo": "riskppo"}
    assert {a: resolve_algo(AGENTS[a], cheetah) for a in expected} == expected
    assert {a: resolve_algo(AGENTS[a], lava) for a in ("oracle", "naive", "cvar", "kl-ppo")} == {
        "oracle": "ppo", "naive": "ppo", "cvar": "riskppo", "kl-ppo": "klppo"}
    with pytest.raises(ValueError, match="on-policy"):
        resolve_algo(AGENTS["kl-ppo"], cheetah)
    assert set(agents_for(cheetah)) == {"oracle", "naive", "single", "cvar", "cvar-ppo"}
    assert "cvar-ppo" not in agents_for(lava) and "single" in agents_for(lava)
    from ruagent.experiments.headline import run_headline

    with pytest.raises(ValueError, match="none of the agents"):  # refused before any work
        run_headline("unused", testbeds=["speed-limit-cheetah"], agents=["kl-ppo", "lcb"])
    # plan_jobs gives each testbed only the agents it takes
    jobs = plan_jobs(["lava-canonical", "speed-limit-cheetah"], ["oracle", "kl-ppo", "cvar-ppo"], [0])
    assert {(j.testbed, j.agent) for j in jobs if j.agent} == {
        ("lava-canonical", "oracle"), ("lava-canonical", "kl-ppo"),
        ("speed-limit-cheetah", "oracle"), ("speed-limit-cheetah", "cvar-ppo")}


def test_single_agent_trains_on_its_own_one_member_posterior(tmp_path):
    path = run_job(Job("lava-canonical", 0, "single"), tmp_path, Budget(tiny=True))
    result = json.loads(path.read_text())
    assert (result["n_members"], result["algo"]) == (1, "ppo")
    assert not Job("lava-canonical", 0).result_path(tmp_path).exists()  # the testbed's K-member one is not needed
    naive = json.loads(run_job(Job("lava-canonical", 0, "naive"), tmp_path, Budget(tiny=True)).read_text())
    assert naive["n_members"] == TESTBEDS["lava-canonical"].n_members


@pytest.mark.parametrize("name", ["linear-env", "linear-env-nointercept", "linear-transition"])
def test_linear_posteriors_follow_the_choice(name):
    model, labels = build_posterior(TESTBEDS["lava-canonical"], 0, label_budget=200, posterior=name)
    assert (model.family, model.bias) == ("linear", POSTERIORS[name].bias)
    assert model.n_members == TESTBEDS["lava-canonical"].n_members and len(labels) == 200
    env_features = POSTERIORS[name].features == "env"
    assert (model.features_mode == "env") == env_features


@pytest.mark.parametrize("name", ["ensemble-env", "ensemble-transition"])
def test_ensemble_posteriors_fit_and_predict_k_members(name):
    model, labels = build_posterior(TESTBEDS["distributional-shift"], 0, label_budget=64, posterior=name)
    assert model.family == "ensemble" and model.features_mode == POSTERIORS[name].features
    members = model.predict(labels.obs[:5], labels.action[:5], labels.next_obs[:5])
    assert members.shape == (model.n_members, 5) and np.isfinite(members).all()


def test_sweep_names_exist_and_the_cartpole_posterior_is_exempt():
    assert set(SWEEP_POSTERIORS) <= set(POSTERIORS)
    with pytest.raises(ValueError, match="exempt"):
        build_posterior(TESTBEDS["two-hypothesis-cartpole"], 0, label_budget=10, posterior="linear-env")
    with pytest.raises(ValueError, match="choose from"):
        build_posterior(TESTBEDS["lava-canonical"], 0, label_budget=10, posterior="gp")


def test_the_reward_uncertainty_protocol_never_labels_lava_and_the_transfer_one_does():
    _, safe = build_posterior(TESTBEDS["distributional-shift-ru"], 0, label_budget=2000)
    _, random = build_posterior(TESTBEDS["distributional-shift"], 0, label_budget=2000)
    lava_reward = -51.0  # step cost + lava
    assert not np.any(safe.reward == lava_reward) and np.any(safe.reward == 49.0)  # the goal is labelled
    assert np.sum(random.reward == lava_reward) > 10


def test_kl_ppo_job_trains_its_reference_first_and_uses_its_policy(tmp_path):
    path = run_job(Job("lava-canonical", 0, "kl-ppo"), tmp_path, Budget(tiny=True))
    result = json.loads(path.read_text())
    reference = Job("lava-canonical", 0, "reference").folder(tmp_path)
    assert (reference / "result.json").is_file() and result["posterior"] == "linear-env"
    assert result["hyperparams"]["kl_coef"] == load_hyperparams("klppo", "lava-canonical")["kl_coef"]
    from stable_baselines3 import PPO

    from ruagent.agents import KLPPO

    model = KLPPO.load(path.parent / "model.zip", device="cpu")
    ref = PPO.load(reference / "model.zip", device="cpu")
    for key, value in ref.policy.state_dict().items():
        torch.testing.assert_close(model.ref_policy.state_dict()[key], value)
    assert json.loads((reference / "result.json").read_text())["agent"] == "reference"


def test_an_output_folder_holds_one_posterior_choice(tmp_path):
    run_job(Job("lava-canonical", 0), tmp_path, Budget(tiny=True))
    with pytest.raises(ValueError, match="new --out"):
        run_job(Job("lava-canonical", 0, None, "linear-env-nointercept"), tmp_path, Budget(tiny=True))


def test_plan_passes_the_posterior_and_puts_the_reference_after_the_oracle():
    jobs = plan_jobs(["lava-canonical"], ["kl-ppo", "reference", "oracle"], [0], "ensemble-env")
    assert [j.agent for j in jobs] == [None, "oracle", "reference", "kl-ppo"]
    assert {j.posterior for j in jobs} == {"ensemble-env"}


def test_two_hypothesis_scores_report_each_hypothesis_return_and_the_side(tmp_path):
    result = json.loads(run_job(Job("two-hypothesis-cartpole", 0, "naive"), tmp_path, Budget(tiny=True)).read_text())
    scores = result["evaluation"]["test"]
    # The test variant's truth is hypothesis 1; hypothesis 0 pays 2 a step right, 1 left.
    np.testing.assert_allclose(scores["true_return"], scores["return_hypothesis1"])
    right = np.asarray(scores["right_of_centre"]) * np.asarray(scores["episode_length"])
    np.testing.assert_allclose(scores["return_hypothesis0"], np.asarray(scores["episode_length"]) + right, atol=1e-6)
    np.testing.assert_allclose(scores["right_of_centre"], scores["side_effect_steps"])


def test_kl_selection_rule_prefers_the_larger_beta_within_one_standard_error():
    chosen, means, errors = kl_selection.choose({0.01: [10.0, 12.0], 0.1: [10.5, 11.0], 1.0: [2.0, 3.0]})
    assert means == {0.01: 11.0, 0.1: 10.75, 1.0: 2.5} and errors[0.01] == pytest.approx(1.0)
    assert chosen == 0.1  # 10.75 is within one standard error (1.0) of the best, 11.0
    assert kl_selection.choose({0.01: [5.0], 0.1: [1.0], 1.0: [1.0]})[0] == 0.01


def test_kl_selection_writes_its_evidence(tmp_path):
    assert kl_selection.main(["--testbeds", "distributional-shift", "--seeds", "1", "--tiny",
                              "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "distributional-shift.json").read_text())
    assert report["candidates"] == load_hyperparams("klppo", "distributional-shift")["kl_coef_candidates"]
    assert report["chosen"] in report["candidates"] and report["variant"] == {"variant": "train"}
    assert set(report["per_seed"]) == {f"{b:g}" for b in report["candidates"]}


def test_solvability_reports_the_criterion_of_each_kind_of_testbed(tmp_path, capsys):
    testbeds = ["lava-canonical", "point-navigation", "two-hypothesis-cartpole"]
    assert solvability.main(["--testbeds", *testbeds, "--seeds", "1", "--tiny", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "solvability.json").read_text())["testbeds"]
    lava = report["lava-canonical"]["per_seed"][0]
    assert lava["score"] == pytest.approx((lava["true_return"] - lava["random_return"])
                                          / (lava["optimal_return"] - lava["random_return"]))
    assert report["point-navigation"]["criterion"] == "goal rate, no side effects"
    assert report["two-hypothesis-cartpole"]["per_seed"][0]["score"] == pytest.approx(
        report["two-hypothesis-cartpole"]["per_seed"][0]["true_return"] / 500)
    assert "| lava-canonical |" in capsys.readouterr().out


def test_speed_limit_cheetah_runs_its_off_policy_agents_at_a_tiny_budget(tmp_path):
    """Issue 16's MuJoCo comparison goes through the same runner: every agent of the testbed trains,
    is scored by the true reward and leaves a result; the cvar agent is RiskSAC over the K members."""
    pytest.importorskip("mujoco")
    from ruagent.agents import RiskSAC

    results = {}
    for agent in agents_for(TESTBEDS["speed-limit-cheetah"]):
        path = run_job(Job("speed-limit-cheetah", 0, agent), tmp_path, Budget(tiny=True))
        results[agent] = json.loads(path.read_text())
    assert {a: r["algo"] for a, r in results.items()} == {
        "oracle": "sac", "naive": "sac", "single": "sac", "cvar": "risksac", "cvar-ppo": "riskppo"}
    assert results["single"]["n_members"] == 1 and results["naive"]["n_members"] == 10
    for result in results.values():
        scores = result["evaluation"]["test"]
        assert len(scores["true_return"]) == 2 and result["timesteps"] >= 300
        assert all(0.0 <= share <= 1.0 for share in scores["side_effect_steps"])
    model = RiskSAC.load(Job("speed-limit-cheetah", 0, "cvar").folder(tmp_path) / "model.zip", device="cpu")
    assert (model.risk, model.n_members) == ("cvar", 10)


def test_drift_control_trains_on_side_indifferent_cartpole_and_is_scored_in_the_test_variant(tmp_path, monkeypatch):
    """Issue 15: plain-CartPole PPO in the same table as the TwoHypothesis agents, so the side an agent
    takes can be told from drift."""
    import gymnasium as gym

    from ruagent.experiments import agents as agents_module

    made = []
    real_make = gym.make
    monkeypatch.setattr(gym, "make", lambda env_id, *a, **k: made.append(env_id) or real_make(env_id, *a, **k))
    assert "drift" in agents_for(TESTBEDS["two-hypothesis-cartpole"])
    assert "drift" not in agents_for(TESTBEDS["lava-canonical"])
    with pytest.raises(ValueError, match="control env"):
        agents_module.make_training_env(TESTBEDS["lava-canonical"], AGENTS["drift"], None, 0)
    result = json.loads(run_job(Job("two-hypothesis-cartpole", 0, "drift"), tmp_path, Budget(tiny=True)).read_text())
    assert "CartPole-v1" in made  # trained there ...
    scores = result["evaluation"]["test"]  # ... and scored in the test variant like every agent
    assert set(scores) >= {"right_of_centre", "episode_length", "return_hypothesis0", "return_hypothesis1"}
