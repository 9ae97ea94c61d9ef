"""Run folders (ruagent.cli.run_dir): names stay inside runs/, --force deletes only what ruagent made,
creation is exclusive, and one process at a time writes a run (a lock naming its PID).

Most checks drive the real entry point (``python train.py fit-reward ...``) as a user would;
the races are checked at the RunDir.create level, with processes started together.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ruagent.cli.run_dir import (
    LOCK,
    MARKER,
    RunDir,
    RunExistsError,
    RunLockedError,
    RunNameError,
    default_run_name,
    run_path,
    validate_run_name,
)
from tests.cli.test_train_cli import ROOT, train

#: fit-reward on a few labels: the cheapest run that writes a whole run folder
FAST = ["--no-progress", "--set", "labels.budget=50"]
BAD_NAMES = ["../x", "../../escaped", "..", ".", "/abs/path", "a/b", "a\\b", "bad\nname", "bad\x01name", ""]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (files with their bytes), to see that nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working folder with something precious beside runs/: the victims of an escaping name."""
    work = tmp_path / "work" / "project"
    (work / "runs").mkdir(parents=True)
    (work / "thesis.tex").write_text("\\section{Results}")
    (work / "config.yaml").write_text("seed: 0\n")
    return work


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


# ---------------------------------------------------------------------------- names
@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_that_is_not_one_folder_name_is_refused(name):
    with pytest.raises(RunNameError, match="not a plain folder name") as refused:
        validate_run_name(name)
    assert "\n" not in str(refused.value) and "one plain folder name" in str(refused.value)


def test_escaping_names_are_refused_by_train_py_before_anything_is_created(workdir):
    before = snapshot(workdir.parents[1])
    absolute = str(workdir.parent / "abs" / "path")  # absolute, but inside tmp_path should it ever be written
    for name in [absolute if name == "/abs/path" else name for name in BAD_NAMES]:
        for extra in ([], ["--force"]):
            result = train("fit-reward", "--name", name, "--runs-dir", str(workdir / "runs"), *extra, *FAST,
                           cwd=workdir, timeout=60)
            assert result.returncode == 2, (name, extra, result.stderr)
            errors = error_lines(result.stderr)
            assert len(errors) == 1 and "not a plain folder name" in errors[0], (name, result.stderr)
            assert "Traceback" not in result.stderr
    # nothing changed anywhere: not beside runs/, not above it, not inside it
    assert snapshot(workdir.parents[1]) == before


def test_an_escaping_name_from_set_or_a_config_file_is_refused_too(workdir):
    (workdir / "mine.yaml").write_text("name: ../escaped\n")
    for args in (["--set", "name=../escaped"], ["--config", "mine.yaml"]):
        result = train("fit-reward", *args, *FAST, cwd=workdir, timeout=60)
        assert result.returncode == 2 and "not a plain folder name" in result.stderr, result.stderr
    assert not (workdir / "escaped").exists() and list((workdir / "runs").iterdir()) == []


def test_a_symlink_in_runs_pointing_outside_is_refused(workdir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "thesis.tex").write_text("precious")
    (outside / "config.yaml").write_text("seed: 0\n")
    (workdir / "runs" / "link").symlink_to(outside)
    with pytest.raises(RunNameError, match="outside runs_dir"):
        run_path(workdir / "runs", "link")
    before = snapshot(outside)
    for extra in ([], ["--force"]):
        result = train("fit-reward", "--name", "link", *extra, *FAST, cwd=workdir, timeout=60)
        assert result.returncode == 2 and "outside runs_dir" in result.stderr, result.stderr
    assert snapshot(outside) == before and (workdir / "runs" / "link").is_symlink()


# ---------------------------------------------------------------------------- --force and the marker
def test_force_refuses_a_folder_without_the_marker_and_keeps_its_files(workdir):
    old = workdir / "runs" / "old"  # e.g. made by hand, or by an older ruagent: a config.yaml but no marker
    old.mkdir()
    (old / "config.yaml").write_text("seed: 0\n")
    (old / "notes.txt").write_text("keep me")
    before = snapshot(old)
    result = train("fit-reward", "--name", "old", "--force", *FAST, cwd=workdir, timeout=60)
    assert result.returncode == 2 and MARKER in result.stderr and "not a run folder" in result.stderr
    assert snapshot(old) == before


def test_force_replaces_a_marked_unlocked_run_folder(workdir):
    first = train("fit-reward", "--name", "same", *FAST, cwd=workdir)
    assert first.returncode == 0, first.stderr
    run = workdir / "runs" / "same"
    assert (run / MARKER).is_file() and (run / LOCK).is_file() and (run / "reward_model.pt").is_file()
    (run / "stale.txt").write_text("from the first run")
    again = train("fit-reward", "--name", "same", "--force", *FAST, cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert not (run / "stale.txt").exists() and (run / MARKER).is_file() and (run / "reward_model.pt").is_file()
    assert sorted(p.name for p in (workdir / "runs").iterdir()) == ["same"]  # no leftovers beside it


# ---------------------------------------------------------------------------- exclusive creation
RACE = textwrap.dedent("""
    import sys, time
    from ruagent.cli.run_dir import RunDir, RunExistsError
    folder, start, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    for i in range(rounds):
        while time.time() < start + 0.1 * i:  # both racers leave this line together
            pass
        try:
            RunDir.create(f"{folder}/race{i}").release()
        except RunExistsError:
            print("lost", flush=True)
        else:
            print("won", flush=True)
""")


def test_two_processes_creating_one_name_exactly_one_wins(tmp_path):
    rounds, start = 20, time.time() + 2.0  # both are started (imports done) well before this
    racers = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path / "runs"), str(start), str(rounds)],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [racer.communicate(timeout=120)[0].split() for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    for i, pair in enumerate(zip(*outcomes, strict=True)):
        assert sorted(pair) == ["lost", "won"], (i, pair)
        assert (tmp_path / "runs" / f"race{i}" / MARKER).is_file()
    assert len(outcomes[0]) == rounds


def test_a_creator_whose_empty_folder_was_taken_over_and_claimed_loses(tmp_path, monkeypatch):
    """The interleaving the race above hits rarely (CI saw both racers win once): A makes the folder; B finds it
    empty, takes it over, claims it and lets go; only then does A take the (free) lock. A must lose."""
    path, lock, interposed = tmp_path / "runs" / "race", RunDir.lock, []

    def lock_after_another_creator(self):
        if not interposed:
            interposed.append(True)
            RunDir.create(path).release()  # creator B, start to finish
        return lock(self)

    monkeypatch.setattr(RunDir, "lock", lock_after_another_creator)
    with pytest.raises(RunExistsError, match="just created by another process"):
        RunDir.create(path)
    assert interposed and (path / MARKER).is_file()


def test_default_names_are_unique_even_within_one_second():
    names = [default_run_name("ruagent/LavaWorld-v0", "riskppo", 0) for _ in range(5000)]
    assert len(set(names)) == len(names)
    assert all(validate_run_name(name) == name for name in names[:10])
    prefix, suffix = names[0].rsplit("-", 1)
    assert prefix.startswith("LavaWorld-v0-riskppo-s0-") and len(suffix) == 4 and int(suffix, 16) >= 0


def test_create_refuses_an_existing_folder_and_keeps_it(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.write_config({"seed": 0})
    with pytest.raises(RunExistsError, match="--force"):
        RunDir.create(tmp_path / "run")
    assert run.config_path.is_file()
    run.release()


# ---------------------------------------------------------------------------- the lock
HOLD = textwrap.dedent("""
    import sys, time
    from ruagent.cli.run_dir import RunDir
    RunDir.open(sys.argv[1], lock=True)
    print("locked", flush=True)
    time.sleep(120)
""")


def hold_lock(run: Path) -> subprocess.Popen:
    """A helper process holding ``run``'s lock (as a live train.py does) until it is killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_is_refused_naming_the_pid_and_a_crashed_one_blocks_nothing(workdir):
    first = train("fit-reward", "--name", "live", *FAST, cwd=workdir)
    assert first.returncode == 0, first.stderr
    run = workdir / "runs" / "live"
    holder = hold_lock(run)
    try:
        for args in (["--resume", "runs/live", "--no-progress"], ["fit-reward", "--name", "live", "--force", *FAST]):
            refused = train(*args, cwd=workdir, timeout=60)
            assert refused.returncode == 2, refused.stderr
            errors = error_lines(refused.stderr)
            assert len(errors) == 1 and f"PID {holder.pid}" in errors[0] and "in use" in errors[0], refused.stderr
        assert (run / "reward_model.pt").is_file()  # --force deleted nothing under a live writer
        with pytest.raises(RunLockedError) as locked:
            RunDir.open(run, lock=True)
        assert locked.value.pid == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: the OS drops the flock with the process
        holder.wait(timeout=30)
    with RunDir.open(run, lock=True) as taken:  # the lock is free again ...
        assert taken.locked and int(taken.lock_path.read_text().split()[0]) == os.getpid()
    resumed = train("--resume", "runs/live", "--no-progress", cwd=workdir)  # ... and --resume proceeds
    assert resumed.returncode == 0, resumed.stderr
    assert "reusing" in resumed.stderr


def test_an_old_run_folder_without_the_marker_still_resumes(workdir):
    first = train("fit-reward", "--name", "old", *FAST, cwd=workdir)
    assert first.returncode == 0, first.stderr
    run = workdir / "runs" / "old"
    (run / MARKER).unlink()
    (run / LOCK).unlink()  # as an earlier version left it
    resumed = train("--resume", "runs/old", "--no-progress", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert not (run / MARKER).exists()  # --resume does not claim it for --force


def test_a_sweep_trial_takes_its_run_folder_lock_too(tmp_path):
    """A trial (a retry, or a sweep --resume) does not write a run folder another process is writing."""
    from ruagent.cli import config as config_lib
    from ruagent.cli.sweep import run_trial

    config = config_lib.resolve("lavaworld", [f"runs_dir={tmp_path / 'runs'}", "name=seed=0"])
    run = RunDir.create(run_path(config["runs_dir"], "seed=0"), lock=False)
    run.write_config(config)
    holder = hold_lock(run.path)
    try:
        with pytest.raises(RunLockedError, match=f"PID {holder.pid}"):
            run_trial({"trial": {"name": "seed=0", "params": {"seed": 0}, "config": config}, "sweep": str(tmp_path),
                       "argv": []})
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert not run.meta_path.exists()  # the trial wrote nothing
    with pytest.raises(RunNameError):
        run_trial({"trial": {"name": "../escaped", "params": {}, "config": config}, "sweep": str(tmp_path),
                   "argv": []})
