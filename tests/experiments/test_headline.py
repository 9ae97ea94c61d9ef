"""The headline experiment's harness: a tiny run produces every file; the report's arithmetic.

The tiny run trains for a few hundred steps, so nothing here asserts the science (that is
docs/results.md's job); the report tests use hand-made job results whose right answers are
known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ruagent.experiments.agents import AGENTS
from ruagent.experiments.headline import main, plan_jobs, run_headline, write_report
from ruagent.experiments.report import HOPE_AGENTS, TABLE_METRICS
from ruagent.experiments.runner import Budget, Job, load_posterior, run_job
from ruagent.experiments.testbeds import TESTBEDS

TINY_AGENTS = ("oracle", "naive", "cvar")
#: the testbeds a run without --testbeds takes (the MuJoCo one is run only when named)
DEFAULT_TESTBEDS = {name: spec for name, spec in TESTBEDS.items() if spec.in_default_run}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("headline")
    report = run_headline(out, seeds=1, agents=TINY_AGENTS, tiny=True, workers=1, progress_bar=False)
    return out, report


def test_tiny_run_writes_table_and_every_figure(tiny_run: tuple[Path, dict]) -> None:
    out, report = tiny_run
    assert json.loads((out / "table.json").read_text()) == json.loads(json.dumps(report))
    assert report["jobs_finished"] == report["jobs_total"] == len(DEFAULT_TESTBEDS) * (1 + len(TINY_AGENTS))
    assert "speed-limit-cheetah" not in report["testbeds"]  # MuJoCo and hours: only when named
    assert not report["failed"]
    expected = {"headline.png", "ood.png"}
    expected |= {f"goodhart-{name}.png" for name in DEFAULT_TESTBEDS}
    expected |= {f"{name}-{variant}.png" for name, spec in DEFAULT_TESTBEDS.items() for variant in spec.eval_variants}
    assert {Path(p).name for p in report["figures"]} == expected
    for figure in report["figures"]:
        assert (out / figure).read_bytes().startswith(PNG_MAGIC)
    table = (out / "table.md").read_text()
    for spec in DEFAULT_TESTBEDS.values():
        assert spec.title in table
    assert "OOD AUROC" in table and "headline hypotheses, checked" in table


def test_tiny_run_has_a_row_per_testbed_variant_and_agent_with_valid_intervals(tiny_run: tuple[Path, dict]) -> None:
    _, report = tiny_run
    cells = {(row["testbed"], row["variant"], row["agent"]) for row in report["rows"]}
    assert cells == {(name, variant, agent) for name, spec in DEFAULT_TESTBEDS.items()
                     for variant in spec.eval_variants for agent in TINY_AGENTS}
    for row in report["rows"]:
        extra = {"return_hypothesis0", "return_hypothesis1"} if row["testbed"] == "two-hypothesis-cartpole" else set()
        assert set(row["metrics"]) == set(TABLE_METRICS) | extra
        for name in ("true_return", "proxy_return", "goodhart_gap", "side_effect_rate"):
            interval = row["metrics"][name]
            assert interval["low"] <= interval["estimate"] <= interval["high"], (row["testbed"], name)
        rate = row["metrics"]["side_effect_rate"]
        assert 0.0 <= rate["low"] and rate["high"] <= 1.0
        if row["testbed"] != "two-hypothesis-cartpole" and row["testbed"] != "point-navigation":
            assert row["metrics"]["regret"] is not None  # the gridworld solver gives regret to the optimum
    ood = {(entry["testbed"], entry["variant"]) for entry in report["ood"]}
    assert ood == {(name, variant) for name, spec in DEFAULT_TESTBEDS.items() for variant in spec.eval_variants}


def test_tiny_run_keeps_models_and_posteriors_loadable(tiny_run: tuple[Path, dict]) -> None:
    import gymnasium as gym
    from stable_baselines3 import PPO

    import ruagent
    from ruagent.agents import RiskPPO

    out, _ = tiny_run
    seed_folder = out / "runs" / "lava-canonical" / "seed0"
    env = gym.make("ruagent/LavaWorld-v0", variant="test")
    posterior = ruagent.load_reward_model(seed_folder / "reward_model.pt", env=env)
    assert posterior.n_members == TESTBEDS["lava-canonical"].n_members
    obs, _ = env.reset(seed=0)
    for agent, cls in (("oracle", PPO), ("cvar", RiskPPO)):
        model = cls.load(seed_folder / agent / "model.zip", device="cpu")
        assert env.action_space.contains(model.predict(obs, deterministic=True)[0])
    result = json.loads((seed_folder / "cvar" / "result.json").read_text())
    assert result["curve"] and result["curve"][-1]["step"] == result["timesteps"]
    n_episodes = Budget(tiny=True).eval_episodes(TESTBEDS["lava-canonical"])
    assert len(result["evaluation"]["test"]["true_return"]) == n_episodes


def test_finished_jobs_are_skipped_on_rerun(tiny_run: tuple[Path, dict]) -> None:
    out, _ = tiny_run
    job = Job("lava-canonical", 0, "naive")
    before = job.result_path(out).stat().st_mtime_ns
    assert run_job(job, out, Budget(tiny=True)) == job.result_path(out)
    assert job.result_path(out).stat().st_mtime_ns == before


def _committed_posterior(tiny_run: tuple[Path, dict], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of seed 0's lava-canonical posterior job as a fresh clone has it: posterior.json only."""
    out, _ = tiny_run
    source = out / "runs" / "lava-canonical" / "seed0"
    clone = tmp_path / "clone"
    folder = clone / "runs" / "lava-canonical" / "seed0"
    folder.mkdir(parents=True)
    (folder / "posterior.json").write_bytes((source / "posterior.json").read_bytes())
    return clone, source


def test_a_committed_posterior_job_is_refitted_where_its_weights_are_gone(tiny_run, tmp_path) -> None:
    import gymnasium as gym

    import ruagent
    from ruagent.data import Transitions

    clone, source = _committed_posterior(tiny_run, tmp_path)
    job = Job("lava-canonical", 0, "naive")
    refitted = load_posterior(TESTBEDS["lava-canonical"], job, clone, Budget(tiny=True))
    assert (clone / "runs" / "lava-canonical" / "seed0" / "reward_model.pt").is_file()  # kept for the next job
    env = gym.make("ruagent/LavaWorld-v0", variant="test")
    original = ruagent.load_reward_model(source / "reward_model.pt", env=env)
    labels = Transitions.load(source / "labels.npz")
    batch = (labels.obs, labels.action, labels.next_obs)
    np.testing.assert_allclose(refitted.predict(*batch), original.predict(*batch), atol=1e-6)


def test_a_refit_that_draws_other_labels_is_refused(tiny_run, tmp_path) -> None:
    clone, _ = _committed_posterior(tiny_run, tmp_path)
    path = clone / "runs" / "lava-canonical" / "seed0" / "posterior.json"
    recorded = json.loads(path.read_text())
    assert len(recorded["labels_sha256"]) == 64
    path.write_text(json.dumps({**recorded, "labels_sha256": "0" * 64}))
    with pytest.raises(RuntimeError, match="other labels"):
        load_posterior(TESTBEDS["lava-canonical"], Job("lava-canonical", 0, "naive"), clone, Budget(tiny=True))


def test_plan_is_posteriors_first_then_seed_major_with_the_oracle_first() -> None:
    jobs = plan_jobs(["lava-canonical", "two-hypothesis-cartpole"], ["cvar", "oracle"], range(2))
    assert [j.agent for j in jobs[:4]] == [None] * 4
    assert [(j.seed, j.testbed, j.agent) for j in jobs[4:7]] == [
        (0, "lava-canonical", "oracle"), (0, "lava-canonical", "cvar"), (0, "two-hypothesis-cartpole", "oracle")]
    assert {j.seed for j in jobs[4:8]} == {0} and {j.seed for j in jobs[8:]} == {1}


# ---------------------------------------------------------------------------- report arithmetic
def _write_agent(out: Path, agent: str, seed: int, true_return: list[float], side_effect: list[float],
                 optimal: float = 1.1) -> None:
    n = len(true_return)
    evaluation = {"test": {
        "true_return": true_return, "proxy_return": [r + 1.0 for r in true_return], "goodhart_gap": [1.0] * n,
        "side_effect": side_effect, "side_effect_steps": [s / 10 for s in side_effect],
        "episode_length": [10.0] * n, "optimal_return": [optimal] * n,
    }}
    path = Job("lava-canonical", seed, agent).result_path(out)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"testbed": "lava-canonical", "seed": seed, "agent": agent, "timesteps": 100,
                                "curve": [{"step": 100, "true_return": true_return[0], "proxy_return": 0.0}],
                                "evaluation": evaluation}))


def test_report_pools_seeds_measures_regret_and_checks_the_hopes(tmp_path: Path) -> None:
    seeds = range(4)
    for seed in seeds:
        _write_agent(tmp_path, "oracle", seed, [1.1, 1.1], [0.0, 0.0])
        _write_agent(tmp_path, "naive", seed, [-4.2, -4.2], [1.0, 1.0])
        _write_agent(tmp_path, "cvar", seed, [1.1, 0.9 + 0.05 * seed], [0.0, 0.0])  # >= 0.9 of the oracle
        _write_agent(tmp_path, "worst", seed, [0.5, 0.5], [0.0, 0.0])                # safe but far from the oracle
        _write_agent(tmp_path, "broil", seed, [1.1, 1.1], [0.0, float(seed == 0)])   # one lava episode
    report = write_report(tmp_path, {"command": "test", "machine": "test", "wall_seconds": 1.0}, figures=False)
    rows = {row["agent"]: row for row in report["rows"]}
    assert list(rows) == [a for a in AGENTS if a in rows]  # the agents' canonical order
    cvar = rows["cvar"]["metrics"]
    assert cvar["true_return"]["unit"] == "seed" and cvar["true_return"]["n"] == len(seeds)
    expected_cvar = np.mean([np.mean([1.1, 0.9 + 0.05 * s]) for s in seeds])
    assert cvar["true_return"]["estimate"] == pytest.approx(expected_cvar)
    assert cvar["regret"]["estimate"] == pytest.approx(1.1 - expected_cvar)  # solver optimum, paired
    assert rows["naive"]["metrics"]["regret"]["estimate"] == pytest.approx(1.1 + 4.2)
    assert cvar["vs_oracle"]["estimate"] == pytest.approx(expected_cvar / 1.1)
    assert rows["broil"]["metrics"]["side_effect_rate"]["estimate"] == pytest.approx(0.5 / len(seeds))
    hopes = {check["claim"].split(" has ")[0]: check["holds"] for check in report["hopes"] if " has " in check["claim"]}
    # only the testbed and agents the files hold are checked (no "not measured" lines for absent ones)
    assert hopes == {"lava-canonical: cvar": True, "lava-canonical: worst": False, "lava-canonical: broil": False}
    naive_check = next(c for c in report["hopes"] if c["claim"].startswith("lava-canonical: naive"))
    assert naive_check["holds"] is True
    assert set(HOPE_AGENTS) <= set(rows)
    assert "| cvar | 4 |" in (tmp_path / "table.md").read_text()


def test_total_timesteps_overrides_every_testbed_budget() -> None:
    for spec in TESTBEDS.values():
        assert Budget(total_timesteps=300).timesteps(spec) == 300
        assert Budget(tiny=True, total_timesteps=300).timesteps(spec) == 300
        assert Budget().timesteps(spec) == spec.total_timesteps
        assert Budget(tiny=True).timesteps(spec) == spec.tiny_timesteps
    with pytest.raises(ValueError, match="total_timesteps"):
        run_headline("unused", total_timesteps=0)


def test_first_seed_runs_seeds_no_published_run_used(tmp_path: Path, monkeypatch) -> None:
    from ruagent.experiments import headline

    ran = []
    monkeypatch.setattr(headline, "run_job", lambda job, out, budget: ran.append(job) or job.result_path(out))
    assert main(["--first-seed", "10", "--seeds", "2", "--testbeds", "lava-canonical", "--agents", "naive", "--tiny",
                 "--workers", "1", "--no-progress", "--out", str(tmp_path)]) == 0
    assert sorted({job.seed for job in ran}) == [10, 11]
    assert json.loads((tmp_path / "table.json").read_text())["first_seed"] == 10
    with pytest.raises(ValueError, match="first_seed"):
        run_headline(tmp_path, seeds=2, first_seed=-1)
    with pytest.raises(ValueError, match="evaluation"):
        run_headline(tmp_path, seeds=2, first_seed=10_000)


def test_cli_refuses_unknown_names_and_empty_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--agents", "clairvoyant", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "clairvoyant" in capsys.readouterr().err
    assert main(["--report-only", "--out", str(tmp_path / "nothing")]) == 2
    assert "run the experiment first" in capsys.readouterr().err
    with pytest.raises(ValueError, match="choose from"):
        run_headline(tmp_path, testbeds=["lava-world"], tiny=True)


def test_a_sweep_agent_overrides_the_committed_kl_coefficient(tiny_run: tuple[Path, dict]) -> None:
    from ruagent.experiments.testbeds import load_hyperparams

    out, _ = tiny_run
    result = json.loads(run_job(Job("lava-canonical", 0, "kl-ppo-10"), out, Budget(tiny=True)).read_text())
    assert result["algo"] == "klppo"
    assert result["hyperparams"]["kl_coef"] == 10.0 != load_hyperparams("klppo", "lava-canonical")["kl_coef"]
    assert (out / "runs" / "lava-canonical" / "seed0" / "reference" / "result.json").is_file()  # its π_ref ran first


def test_sigterm_ends_the_chunk_after_the_running_job_and_records_it(tmp_path: Path, monkeypatch) -> None:
    import os
    import signal

    from ruagent.experiments import headline

    ran = []

    def run_then_terminate(job, out, budget):
        ran.append(job)
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill <pid>` would, while this job runs
        return job.result_path(out)

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(headline, "run_job", run_then_terminate)
    headline.run_headline(tmp_path, seeds=2, testbeds=["lava-canonical"], agents=["naive"], tiny=True, workers=1,
                          progress_bar=False)
    assert len(ran) == 1  # the job that was running finished; none of the three others started
    (chunk,) = headline.read_chunks(tmp_path)
    assert chunk["stopped"].startswith("SIGTERM") and chunk["jobs_run"] == 1 and chunk["jobs_left"] == 4
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the caller's again


@pytest.mark.parametrize("finished_beside", [True, False])
def test_a_chunk_whose_untried_jobs_another_runner_finished_is_not_stopped_by_its_budget(
    tmp_path: Path, monkeypatch, finished_beside: bool
) -> None:
    from ruagent.experiments import headline

    def one_job_then_the_deadline(jobs, out, *args, **kwargs):
        for job in jobs[1:] if finished_beside else []:  # a second runner finishes the rest meanwhile
            job.result_path(out).parent.mkdir(parents=True, exist_ok=True)
            job.result_path(out).write_text("{}")
        yield jobs[0], None  # then the deadline passes

    monkeypatch.setattr(headline, "_execute", one_job_then_the_deadline)
    monkeypatch.setattr(headline, "write_report", lambda out, run_info, figures: run_info)
    report = headline.run_headline(tmp_path, seeds=2, testbeds=["lava-canonical"], agents=["naive"], tiny=True,
                                   workers=1, max_hours=1.0, progress_bar=False)
    (chunk,) = headline.read_chunks(tmp_path)
    assert chunk["jobs_run"] == 1
    assert report["stopped_at_budget"] is not finished_beside
    assert chunk["stopped"] == ("all jobs tried" if finished_beside else "max-hours")
