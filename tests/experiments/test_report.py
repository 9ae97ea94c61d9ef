"""The headline report's statistics, its re-rendering from committed per-run files, chunks and the README block.

Hand-made job results (whose right answers are known) stand in for training; one slow test runs
the real tiny experiment end to end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from ruagent.experiments import headline
from ruagent.experiments.headline import (
    CHUNK_LOG,
    EXIT_STOPPED_AT_BUDGET,
    build_report,
    main,
    read_chunks,
    readme_block,
    run_headline,
)
from ruagent.experiments.readme import markers, read_block, replace_block, update_readme
from ruagent.experiments.report import TABLE_METRICS
from ruagent.experiments.runner import Job
from ruagent.experiments.stats import rate_interval

ROOT = Path(__file__).resolve().parents[2]


def write_result(out: Path, testbed: str, agent: str, seed: int, true_return: list[float], side_effect: list[float],
                 side_effect_steps: list[float] | None = None, length: float = 10.0) -> None:
    """One agent job's result.json as runner.py writes it (per-episode lists, a two-point learning curve)."""
    n = len(true_return)
    evaluation = {"test": {
        "true_return": true_return, "proxy_return": [r + 1.0 for r in true_return], "goodhart_gap": [1.0] * n,
        "side_effect": side_effect, "side_effect_steps": side_effect_steps or [s / 10 for s in side_effect],
        "episode_length": [length] * n,
    }}
    path = Job(testbed, seed, agent).result_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "schema": "ruagent.headline.job/1", "testbed": testbed, "seed": seed, "agent": agent, "timesteps": 100,
        "wall_seconds": 2.0, "curve": [{"step": 50, "true_return": -1.0, "proxy_return": 0.5},
                                       {"step": 100, "true_return": true_return[0], "proxy_return": 2.0}],
        "evaluation": evaluation}))


def write_fixture(out: Path) -> None:
    """5 seeds of naive and cvar on LavaWorld (cvar fails on seed 4) and on TwoHypothesisCartPole."""
    for seed in range(5):
        write_result(out, "lava-canonical", "naive", seed, [-4.2, -4.2], [1.0, 1.0])
        failed = seed == 4
        write_result(out, "lava-canonical", "cvar", seed, [-5.0, -5.0] if failed else [1.1, 1.1],
                     [1.0, 0.0] if failed else [0.0, 0.0])
        write_result(out, "two-hypothesis-cartpole", "naive", seed, [10.0], [1.0], [0.8], length=9.0)
        write_result(out, "two-hypothesis-cartpole", "cvar", seed, [100.0], [1.0], [0.1], length=200.0)


@pytest.fixture
def fixture_report(tmp_path: Path) -> tuple[Path, dict]:
    write_fixture(tmp_path)
    return tmp_path, build_report(tmp_path, {"command": "test", "machine": "test"})


def _cell(report: dict, testbed: str, agent: str) -> dict:
    return next(r["metrics"] for r in report["rows"] if (r["testbed"], r["agent"]) == (testbed, agent))


# ---------------------------------------------------------------------------- the statistics in the table
def test_cells_are_iqm_over_seeds_rates_are_wilson_and_improvement_is_paired(fixture_report: tuple[Path, dict]) -> None:
    _, report = fixture_report
    cvar = _cell(report, "lava-canonical", "cvar")
    # IQM over the 5 seeds' means (1.1 x 4, -5): the middle three are 1.1; the failing seed is trimmed ...
    assert cvar["true_return"]["estimate"] == pytest.approx(1.1)
    assert cvar["true_return"]["unit"] == "seed" and cvar["true_return"]["n"] == 5
    # ... but not from the rate: per-seed rates 0, 0, 0, 0, 1/2 -> mean 0.1 with the Wilson interval over 5 seeds
    expected = rate_interval([0, 0, 0, 0, 0.5]).to_dict()
    assert cvar["side_effect_rate"] == pytest.approx(expected)
    assert cvar["side_effect_rate"]["estimate"] == pytest.approx(0.1)
    # P(cvar's seed return > naive's): 4 seeds beat all 5 naive seeds, seed 4 (-5 < -4.2) beats none -> 20/25
    assert cvar["p_better_return"]["estimate"] == pytest.approx(0.8)
    assert 0.0 <= cvar["p_better_return"]["low"] <= 0.8 <= cvar["p_better_return"]["high"] <= 1.0
    assert cvar["p_fewer_side_effects"]["estimate"] == pytest.approx(1.0)  # every cvar seed below naive's 1
    naive = _cell(report, "lava-canonical", "naive")
    assert naive["p_better_return"] is None and naive["side_effect_rate"]["low"] > 0.5
    assert set(naive) == set(TABLE_METRICS)


def test_time_shares_come_with_episode_length_and_are_compared_as_shares(fixture_report: tuple[Path, dict]) -> None:
    _, report = fixture_report
    cvar = _cell(report, "two-hypothesis-cartpole", "cvar")
    assert cvar["side_effect_steps"]["estimate"] == pytest.approx(0.1)
    assert cvar["episode_length"]["estimate"] == pytest.approx(200.0)
    # every episode of both agents went right at least once; the time share separates them
    assert cvar["side_effect_rate"]["estimate"] == 1.0 and cvar["p_fewer_side_effects"]["estimate"] == 1.0
    header = list(TABLE_METRICS)
    assert header.index("episode_length") == header.index("side_effect_steps") + 1
    overall = {(e["agent"], e["metric"]): e for e in report["improvement"]}
    across = overall[("cvar", "p_better_return")]
    assert across["testbeds"] == ["lava-canonical", "two-hypothesis-cartpole"]
    assert across["interval"]["estimate"] == pytest.approx((0.8 + 1.0) / 2)  # the mean over tasks
    cartpole_check = report["hopes"][-1]
    assert cartpole_check["holds"] is True
    assert cartpole_check["evidence"]["cvar_episode_length"]["estimate"] == pytest.approx(200.0)


def test_returns_under_each_hypothesis_get_columns_only_where_the_files_hold_them(tmp_path: Path) -> None:
    """Issue 15: TwoHypothesisCartPole reports the true return under each hypothesis beside the side."""
    write_fixture(tmp_path)
    for seed in range(5):
        path = Job("two-hypothesis-cartpole", seed, "cvar").result_path(tmp_path)
        result = json.loads(path.read_text())
        result["evaluation"]["test"].update(return_hypothesis0=[float(300 + seed)], return_hypothesis1=[100.0])
        path.write_text(json.dumps(result))
    report = build_report(tmp_path, {"command": "test", "machine": "test"})
    cvar = _cell(report, "two-hypothesis-cartpole", "cvar")
    assert cvar["return_hypothesis0"]["estimate"] == pytest.approx(302.0)  # IQM of 300..304
    assert "return_hypothesis0" not in _cell(report, "lava-canonical", "cvar")
    table = headline.markdown_table(report)
    before, after = table.split("## TwoHypothesisCartPole")  # LavaWorld's table comes first
    cartpole = after.split("## Probability of improvement")[0]
    assert "hypothesis 0" in cartpole and "hypothesis 0" not in before
    block = readme_block(report, tmp_path)
    assert "return if hypothesis 0" in block and "return if hypothesis 1" not in block  # that one is the true return


def test_speed_limit_cheetah_compares_time_over_the_limit_not_episodes(tmp_path: Path) -> None:
    """Every 1,000-step episode crosses the limit once (the oracle's too): the share of steps over it is
    the side effect, compared paired per seed, with the episode length beside it."""
    for seed in range(4):
        write_result(tmp_path, "speed-limit-cheetah", "naive", seed, [500.0], [1.0], [0.4], length=1000.0)
        write_result(tmp_path, "speed-limit-cheetah", "cvar", seed, [700.0], [1.0], [0.05], length=1000.0)
    report = build_report(tmp_path, {"command": "test", "machine": "test"})
    cvar = _cell(report, "speed-limit-cheetah", "cvar")
    assert cvar["side_effect_rate"]["estimate"] == 1.0 and cvar["p_fewer_side_effects"]["estimate"] == 1.0
    block = readme_block(report, tmp_path, "cheetah")
    assert "time over the speed limit" in block and "episode length" in block and "--readme-block cheetah" in block
    assert not report["hopes"]  # the generic "<= 2 % of episodes" check does not apply to a time share


def test_the_cheetah_block_lists_every_seed_and_the_others_do_not(tmp_path: Path) -> None:
    for seed, (share, true) in enumerate(((0.4, 500.0), (0.9, -20.0))):
        write_result(tmp_path, "speed-limit-cheetah", "naive", seed, [true, true + 2.0], [1.0, 1.0], [share, share],
                     length=1000.0)
    write_result(tmp_path, "speed-limit-cheetah", "cvar", 0, [700.0], [1.0], [0.05], length=1000.0)  # seed 1 not run
    report = build_report(tmp_path, {"command": "test", "machine": "test"})
    naive = next(r for r in report["rows"] if r["agent"] == "naive")
    assert naive["per_seed"]["true_return"] == [501.0, -19.0] and naive["per_seed"]["side_effect_steps"] == [0.4, 0.9]
    lines = readme_block(report, tmp_path, "cheetah").splitlines()
    assert "| testbed (evaluated on): agent | seed 0 | seed 1 |" in lines
    # time over the limit / true return (episode mean) / proxy return (write_result: true + 1)
    assert next(line for line in lines if line.endswith("naive | 40.0% / 501 / 502 | 90.0% / -19 / -18 |"))
    assert next(line for line in lines if line.endswith("cvar | 5.0% / 700 / 701 | — |"))
    assert "| seed 0 |" not in readme_block(report, tmp_path, "headline")


# ---------------------------------------------------------------------------- traceability
def test_report_only_re_renders_from_the_json_files_alone(tmp_path: Path) -> None:
    """A fresh clone holds only the committed metric files: the same table comes out."""
    ran = tmp_path / "ran"
    write_fixture(ran)
    for junk in ("model.zip", "reward_model.pt", "labels.npz"):  # what a run leaves and git ignores
        (ran / "runs" / "lava-canonical" / "seed0" / junk).write_bytes(b"not committed")
    assert main(["--report-only", "--out", str(ran)]) == 0
    table = (ran / "table.md").read_text()
    assert "| side-effect steps | episode length |" in table and "P(return > naive)" in table
    assert "| cvar | 5 | 1.1 [" in table and "| 80% [" in table
    assert "Probability of improvement over naive, across testbeds" in table
    assert "Wilson" in table and "IQM" in table and "stratified bootstrap" in table
    assert "figures/improvement.png" in table and (ran / "figures" / "improvement.png").is_file()
    clone = tmp_path / "clone"
    for path in ran.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl"):
            (clone / path.relative_to(ran)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, clone / path.relative_to(ran))
    assert not list(clone.rglob("*.zip")) and not list(clone.rglob("*.pt"))
    assert main(["--report-only", "--out", str(clone)]) == 0
    assert (clone / "table.md").read_text() == table
    assert sorted(p.name for p in (clone / "figures").iterdir()) == sorted(p.name for p in (ran / "figures").iterdir())
    original, again = (json.loads((d / "table.json").read_text()) for d in (ran, clone))
    for key in ("rows", "improvement", "hopes", "cost"):
        assert again[key] == original[key], key


def test_results_gitignore_keeps_metrics_and_drops_models() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    folder = "results/headline/runs/lava-canonical/seed0"
    paths = [f"{folder}/naive/result.json", f"{folder}/posterior.json", f"{folder}/naive/model.zip",
             f"{folder}/reward_model.pt", f"{folder}/labels.npz", "results/headline/chunks.jsonl"]
    found = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    assert set(found.stdout.split()) == set(paths[2:5]), found.stdout


# ---------------------------------------------------------------------------- chunks
def _fake_job(seconds: float):
    def run(job: Job, out: Path, budget: object) -> Path:
        time.sleep(seconds)
        if job.agent is None:
            path = job.result_path(out)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"testbed": job.testbed, "seed": job.seed, "agent": None, "ood": {}}))
        else:
            write_result(out, job.testbed, job.agent, job.seed, [1.0], [0.0])
        return job.result_path(out)
    return run


def test_max_hours_stops_after_the_running_job_and_the_next_chunk_resumes(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import torch  # noqa: F401  (imported before the clock starts: the worker's set-up is not the test's subject)

    monkeypatch.setattr(headline, "run_job", _fake_job(2.0))
    monkeypatch.setattr(headline, "draw_figures", lambda *args: [])  # figures: the test above
    kwargs = {"seeds": 1, "testbeds": ["lava-canonical"], "agents": ["oracle", "naive", "cvar"], "tiny": True,
              "workers": 1, "progress_bar": False}
    # 4 jobs of 2 s under a 3 s budget: the 1st and 2nd start in time, the 3rd would start after it
    first = run_headline(tmp_path, max_hours=3.0 / 3600, **kwargs)
    assert first["stopped_at_budget"] and first["jobs_finished"] == 2
    second = run_headline(tmp_path, **kwargs)
    assert not second["stopped_at_budget"] and second["jobs_finished"] == second["jobs_total"] == 4
    chunks = read_chunks(tmp_path)
    assert [(c["chunk"], c["jobs_run"], c["jobs_left"], c["stopped"]) for c in chunks] == [
        (1, 2, 2, "max-hours"), (2, 2, 0, "all jobs tried")]
    assert all(c["wall_seconds"] >= 4.0 for c in chunks)
    third = run_headline(tmp_path, **kwargs)  # nothing left: nothing runs
    assert third["chunks"][-1]["jobs_run"] == 0
    table = (tmp_path / "table.md").read_text()
    assert "## Chunks (chunks.jsonl)" in table and "in 3 chunk(s)" in table
    assert (tmp_path / CHUNK_LOG).read_text().count("\n") == 3


def test_cli_exit_status_says_jobs_are_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(headline, "run_job", _fake_job(0.0))
    monkeypatch.setattr(headline, "draw_figures", lambda *args: [])
    argv = ["--tiny", "--seeds", "1", "--testbeds", "lava-canonical", "--agents", "naive", "--workers", "1",
            "--out", str(tmp_path), "--no-progress"]
    assert main([*argv, "--max-hours", "1e-9"]) == EXIT_STOPPED_AT_BUDGET
    assert "rerun the same command" in capsys.readouterr().out
    assert main(argv) == 0
    with pytest.raises(ValueError, match="max_hours"):
        run_headline(tmp_path, max_hours=0)


# ---------------------------------------------------------------------------- README block
def test_readme_block_is_replaced_between_markers(tmp_path: Path, fixture_report: tuple[Path, dict]) -> None:
    _, report = fixture_report
    start, end = markers("headline")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{start}\nold\n{end}\nafter\n")
    block = readme_block(report, "results/fixture")
    assert update_readme(readme, "headline", block) is True
    assert update_readme(readme, "headline", block) is False  # idempotent
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{end}\nafter\n")
    assert read_block(text, "headline").strip() == block.strip()
    assert "results/fixture/runs/" in block and "P(return > naive)" in block and "time right of centre" in block
    assert "| naive | cvar |" in block  # agents are columns, (testbed, metric) rows
    assert not [line for line in block.splitlines() if line.startswith(("| naive", "| cvar"))]
    with pytest.raises(ValueError, match="exactly one"):
        replace_block("no markers here", "headline", block)


@pytest.mark.slow
def test_tiny_experiment_in_two_chunks_re_renders_from_its_json(tmp_path: Path) -> None:
    """The real thing at the tiny budget, two workers: the first chunk stops on its time budget, the second
    finishes; the learning curves are in result.json; a clone of the JSON files renders the same table."""
    out = tmp_path / "run"
    kwargs = {"seeds": 2, "testbeds": ["two-hypothesis-cartpole"], "agents": ["oracle", "naive", "cvar"],
              "tiny": True, "workers": 2, "progress_bar": False}
    assert run_headline(out, max_hours=1e-9, **kwargs)["stopped_at_budget"]
    report = run_headline(out, **kwargs)
    assert report["jobs_finished"] == report["jobs_total"] == 8 and not report["failed"]
    result = json.loads(Job("two-hypothesis-cartpole", 1, "cvar").result_path(out).read_text())
    assert {"step", "true_return", "proxy_return"} <= set(result["curve"][-1])
    assert result["curve"][-1]["step"] == result["timesteps"]
    assert np.isfinite(result["evaluation"]["test"]["episode_length"]).all()
    clone = tmp_path / "clone"
    shutil.copytree(out, clone, ignore=shutil.ignore_patterns("*.zip", "*.pt", "*.npz", "*.log", "figures"))
    assert main(["--report-only", "--out", str(clone)]) == 0
    assert json.loads((clone / "table.json").read_text())["rows"] == report["rows"]
