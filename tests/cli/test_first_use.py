"""First use of the command line: the bad paths exit clearly, and the command line adapts a preset
to what was asked (another env, another algorithm, a posterior from another run) with a notice.

The Ctrl-C, torn-model and resume checks drive the real ``train.py`` in a subprocess (one
interrupted tiny run, shared by the module); checks that stop before training call ``main()``
in this process, as a user's shell would see it (exit status and stderr).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.cli.test_train_cli import TRAIN, num_timesteps, rollout_total, run_main
from tests.helpers import FullDisk, call_main

#: an interrupted LavaWorld run: one agent, a checkpoint every rollout of 2 x 32 steps
TOTAL, N_STEPS, N_ENVS = 2048, 32, 2
INTERRUPTED = ["--name", "int", "--set", "labels.budget=100", f"agent.total_timesteps={TOTAL}",
               f"agent.hyperparams={{n_steps: {N_STEPS}, n_epochs: 1}}", f"env.n_envs={N_ENVS}",
               "agent.checkpoint_freq=64", "baselines=[]", "eval.enabled=false"]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


def evaluate_main(*args: str) -> tuple[int, str]:
    from ruagent.cli.evaluate import main

    code, _, err = call_main(main, *args)
    return code, err


# ---------------------------------------------------------------------------- Ctrl-C, torn model, resume
@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> dict:
    """``train.py`` (progress bars on) interrupted by SIGINT after its first checkpoint; then a torn final
    model.zip is planted, and ``train.py --resume runs/int`` run as the interrupt message says."""
    work = tmp_path_factory.mktemp("interrupt")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    # A shell starts background jobs with SIGINT ignored and children inherit that (`pytest &` would then run
    # train.py deaf to Ctrl-C): give it the default disposition a terminal's foreground job has.
    process = subprocess.Popen([*TRAIN, *INTERRUPTED], cwd=work, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoints = work / "runs/int/agents/risk/checkpoints"
    deadline = time.monotonic() + 120
    try:
        while not any(checkpoints.glob("step_*.zip")):
            assert process.poll() is None, "training ended before the interrupt; raise TOTAL"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    run = work / "runs/int"
    meta = json.loads((run / "run.json").read_text())
    checkpoint = max(checkpoints.glob("step_*.zip"))
    torn = run / "agents/risk/model.zip"  # what a copy cut short leaves: the zip's start, no 'data' entry
    torn.write_bytes(checkpoint.read_bytes()[: 2 * len(checkpoint.read_bytes()) // 3])
    # the command the message names, as a user would paste it (train.py here is the repository's)
    command = stderr.strip().splitlines()[-1].partition("resume with: python train.py ")[2].split()
    resumed = subprocess.run([*TRAIN, *command, "--no-progress"], cwd=work, env=env, capture_output=True, text=True,
                             timeout=300)
    return {"work": work, "run": run, "code": process.returncode, "stderr": stderr, "meta": meta,
            "checkpoint_steps": int(checkpoint.stem.split("_")[1]), "resumed": resumed}


def test_ctrl_c_exits_130_with_one_line_naming_the_resume_command(interrupted):
    assert interrupted["code"] == 130, interrupted["stderr"]
    stderr = interrupted["stderr"]
    assert "Traceback" not in stderr and "ImportError" not in stderr and "KeyboardInterrupt" not in stderr
    assert error_lines(stderr) == [
        "train.py: error: interrupted; runs/int holds everything up to its last checkpoint; resume with: "
        "python train.py --resume runs/int"
    ]
    assert stderr.strip().splitlines()[-1] == error_lines(stderr)[0]
    assert interrupted["meta"]["status"] == "interrupted"
    # the run folder is consistent: no temporary file left, every checkpoint whole
    assert not list(interrupted["run"].rglob("*.tmp"))


def test_resume_sets_a_torn_model_aside_and_finishes_from_the_checkpoint(interrupted):
    resumed, run = interrupted["resumed"], interrupted["run"]
    assert resumed.returncode == 0, resumed.stderr
    assert "model.zip is incomplete" in resumed.stderr and "moved it to model.torn.zip" in resumed.stderr
    assert "resuming from" in resumed.stderr and f"step {interrupted['checkpoint_steps']}" in resumed.stderr
    assert num_timesteps(run / "agents/risk/model.zip") == rollout_total(TOTAL, N_STEPS, N_ENVS)
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_corrupt_run_files_give_one_line_and_exit_2(interrupted, tmp_path, monkeypatch):
    run = tmp_path / "runs" / "copy"
    shutil.copytree(interrupted["run"], run, ignore=shutil.ignore_patterns(".lock"))
    monkeypatch.chdir(tmp_path)
    # labels/train.npz torn: evaluate.py names it, before evaluating anything
    labels = run / "labels/train.npz"
    labels.write_bytes(labels.read_bytes()[:100])
    code, stderr = evaluate_main("runs/copy", "--no-plots", "--no-progress", "--episodes", "1")
    assert code == 2 and "Traceback" not in stderr
    (line,) = error_lines(stderr)
    assert "runs/copy/labels/train.npz is not a readable transitions file" in line
    # a final model.zip torn after the run finished: evaluate.py says how to finish it
    labels.unlink()
    model = run / "agents/risk/model.zip"
    model.write_bytes(model.read_bytes()[:500])
    code, stderr = evaluate_main("runs/copy", "--no-plots", "--no-progress", "--episodes", "1")
    assert code == 2 and "model.zip is incomplete" in error_lines(stderr)[0] and "--resume runs/copy" in stderr
    # run.json torn: --resume names the file and the way out
    (run / "run.json").write_text('{"stage": "al')
    code, _, stderr = run_main("--resume", "runs/copy", "--no-progress")
    assert code == 2 and "Traceback" not in stderr
    (line,) = error_lines(stderr)
    assert "runs/copy/run.json is corrupt" in line and "--resume runs/copy" in line


def test_evaluate_exits_2_in_one_line_for_a_run_without_agents_or_with_a_bad_config(interrupted, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "runs" / "empty"
    empty.mkdir(parents=True)
    shutil.copyfile(interrupted["run"] / "config.yaml", empty / "config.yaml")
    code, stderr = evaluate_main("runs/empty")
    assert code == 2 and "Traceback" not in stderr
    assert "runs/empty has no finished agent" in error_lines(stderr)[0]
    (empty / "config.yaml").write_text("agent: {risk: cvra}\n")
    code, stderr = evaluate_main("runs/empty")
    assert code == 2 and "Did you mean 'cvar'" in error_lines(stderr)[0]


def test_a_full_disk_exits_1_naming_the_file_and_errno(tmp_path, monkeypatch):
    import torch

    real_save = torch.save

    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: real_save(obj, FullDisk(f), *a, **k))
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_main("fit-reward", "--name", "full", "--no-progress", "--set", "labels.budget=50")
    assert code == 1 and "Traceback" not in stderr and "unexpected pos" not in stderr
    assert error_lines(stderr) == [
        "train.py: error: cannot write runs/full/reward_model.pt: No space left on device (errno 28, ENOSPC); "
        "free space and resume with: python train.py --resume runs/full"
    ]
    assert not (tmp_path / "runs/full/reward_model.pt").exists()


# ---------------------------------------------------------------------------- the preset follows the command line
def test_another_env_resets_the_presets_env_specific_keys_with_a_notice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, stderr = run_main("fit-reward", "--env", "CartPole-v1", "--name", "cp", "--print-config")
    assert code == 0, stderr
    config = yaml.safe_load(out)
    assert config["env"] == {**config["env"], "id": "CartPole-v1", "label_kwargs": {}, "deploy_kwargs": {}}
    assert config["reward_model"]["features"] == "transition" and config["agent"]["hyperparams"] == {}
    (notice,) = [line for line in stderr.splitlines() if line.startswith("notice:")]
    assert "not the preset's ruagent/LavaWorld-v0" in notice and "CartPole-v1 has no reward_features" in notice
    # what the command line sets explicitly stays
    code, out, _ = run_main("--env", "CartPole-v1", "--set", "agent.hyperparams.n_steps=64", "--print-config")
    assert code == 0 and yaml.safe_load(out)["agent"]["hyperparams"] == {"n_steps": 64}
    code, _, stderr = run_main("--env", "CartPole-v1", "--set", "reward_model.features=env", "--print-config")
    assert code == 2 and "has no reward_features" in stderr


def test_hyperparameters_another_algorithm_does_not_take_are_dropped_unless_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, stderr = run_main("--algo", "a2c", "--print-config")
    assert code == 0, stderr
    assert "agent.hyperparams batch_size, n_epochs dropped: A2C does not take them" in stderr
    assert yaml.safe_load(out)["agent"]["hyperparams"] == {"n_steps": 256, "ent_coef": 0.05, "learning_rate": 0.001,
                                                          "gamma": 0.95}
    code, _, stderr = run_main("--algo", "a2c", "--set", "agent.hyperparams.batch_size=8", "--print-config")
    assert code == 2 and "agent.hyperparams.batch_size is not a parameter of A2C" in stderr
    assert "_init_setup_model" not in stderr  # SB3's private parameters are not offered as valid names


def test_agent_stage_takes_env_and_posterior_settings_from_the_posteriors_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_main("fit-reward", "--env", "CartPole-v1", "--name", "cp", "--no-progress", "--set",
                               "labels.budget=50")
    assert code == 0, stderr
    code, out, stderr = run_main("agent", "--reward-model", "runs/cp", "--algo", "a2c", "--print-config")
    assert code == 0, stderr
    config = yaml.safe_load(out)
    assert (config["env"]["id"], config["env"]["deploy_kwargs"]) == ("CartPole-v1", {})
    assert config["reward_model"]["features"] == "transition" and config["agent"]["algo"] == "a2c"
    assert "env from runs/cp/config.yaml" in stderr
    # an env given explicitly wins, and a posterior that does not fit it is refused before anything is made
    before = sorted(p.name for p in (tmp_path / "runs").iterdir())
    code, _, stderr = run_main("agent", "--reward-model", "runs/cp", "--env", "ruagent/LavaWorld-v0",
                               "--set", "reward_model.features=transition")
    assert code == 2 and "Traceback" not in stderr
    (line,) = error_lines(stderr)
    assert "--reward-model runs/cp" in line and "was fitted on observation space" in line
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == before


def test_help_shows_every_option_under_the_name_it_was_called_by(monkeypatch):
    code, out, _ = run_main("--help")
    assert code == 0
    assert out.startswith("usage: train.py [STAGE]")
    for option in ("--config", "--set", "--resume", "--seed", "--reward-model", "--print-config"):
        assert option in out, option
    monkeypatch.setattr(sys, "argv", ["/venv/bin/ruagent-train"])
    code, out, _ = run_main("--help")
    assert code == 0 and out.startswith("usage: ruagent-train [STAGE]")
    from ruagent.cli.evaluate import build_parser

    monkeypatch.setattr(sys, "argv", ["/venv/bin/ruagent-evaluate"])
    assert build_parser().format_usage().startswith("usage: ruagent-evaluate")


def test_a_preset_known_not_to_work_says_so_when_it_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, stderr = run_main("--config", "distributional_shift", "--print-config")
    assert code == 0
    assert "note: distributional_shift is an untuned starting point" in stderr
    assert yaml.safe_load(out)["note"].startswith("distributional_shift is an untuned")
    _, _, quiet = run_main("--print-config")
    assert "note:" not in quiet
