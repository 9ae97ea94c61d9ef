"""The README's code runs as written (with a smaller training budget), so it cannot drift from the API."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section_code(heading: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block under {heading!r}"
    return match.group(1)


def test_own_sb3_project_example_runs(tmp_path):
    code = _section_code("## Use it in your own SB3 project")
    assert "agent.learn(20_000" in code and "progress_bar=True" in code
    assert "torch.set_num_threads(1)  #" in code  # with torch's default threads it took minutes on a busy machine
    small = code.replace("agent.learn(20_000", "agent.learn(512").replace("n_eval_episodes=10", "n_eval_episodes=2")
    script = tmp_path / "example.py"
    script.write_text(small, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"true return on the test map: -?\d+\.\d\d", result.stdout), result.stdout


def test_readme_names_the_two_commands_that_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -e ".[dev]" && python train.py' in readme
    assert 'pip install -e ".[dev,ray,web,mujoco]" && python -m pytest' in readme
    assert 'pip install --quiet -e ".[dev,ray,web,mujoco]"' in ci
    assert ci.rstrip().endswith("python -m pytest")
    # the browser tests run in CI: Chromium installed if missing, and a missing browser fails instead of skipping
    assert "apt-get install" in ci and "chromium chromium-driver" in ci and "RUAGENT_REQUIRE_BROWSER=1" in ci
    # the MuJoCo tests render headless through Mesa's EGL: its Debian libraries installed if missing
    assert 'EGL_PACKAGES="libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri"' in ci


# ---------------------------------------------------------------------------- Quick start
#: small budgets appended through --set, for the commands that train (never the keys a command sets itself)
TINY = {"labels.budget": "200", "agent.total_timesteps": "128", "agent.hyperparams": "{n_steps: 32, n_epochs: 1}",
        "env.n_envs": "2", "eval.episodes": "2", "agent.checkpoint_freq": "64"}


def _quick_start_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme.split("## Quick start", 1)[1], re.DOTALL).group(1)
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


def _small(command: list[str], **extra: str) -> list[str]:
    """``command`` with the TINY budgets (and ``extra`` keys) not already in it, through --set."""
    given = {arg.split("=", 1)[0] for arg in command if "=" in arg}
    keys = {**TINY, **extra}
    if command[2:3] == ["agent"]:  # A2C takes none of PPO's rollout settings
        keys.pop("agent.hyperparams")
    return [*command, "--no-progress", "--set", *(f"{k}={v}" for k, v in keys.items() if k not in given)]


def test_quick_start_commands_run_as_written(tmp_path):
    """Every command of the README's Quick start, in order, with small budgets added through --set;
    ``<name>`` placeholders become the runs the earlier commands made, ``tensorboard`` is parsed only."""
    commands = _quick_start_commands()
    assert [c[:2] for c in commands] == [["python", "train.py"]] * 7 + [["python", "evaluate.py"], ["tensorboard",
                                                                                                   "--logdir"]]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    runs = tmp_path / "runs"

    def run(command: list[str]) -> subprocess.CompletedProcess:
        script = {"train.py": ROOT / "train.py", "evaluate.py": ROOT / "evaluate.py"}[command[1]]
        result = subprocess.run([sys.executable, str(script), *command[2:]], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (command, result.stderr[-3000:])
        return result

    def new_run(before: set[str]) -> str:
        (name,) = {p.name for p in runs.iterdir()} - before
        return f"runs/{name}"

    help_, preset, overrides, fit_reward, agent, web, resume, evaluate, tensorboard = commands
    assert all(option in run(help_).stdout for option in ("--config", "--set", "--resume", "--reward-model"))
    result = run(_small(preset))
    assert "note: distributional_shift is an untuned" in result.stderr and "true return" in result.stdout
    shifted = new_run(set())
    result = run(_small(overrides, **{"eval.enabled": "false"}))
    assert "worst" in result.stderr
    lava = new_run({shifted.split("/")[1]})
    result = run(_small(fit_reward))
    assert "posterior:" in result.stderr and (runs / "cp/reward_model.pt").is_file()
    before = {p.name for p in runs.iterdir()}
    result = run(_small(agent))
    assert "notice: env from runs/cp/config.yaml" in result.stderr and "a2c for" in result.stderr
    assert "CartPole-v1" in new_run(before)
    _run_web_labelling(web, tmp_path, env)
    assert resume[2:] == ["--resume", "runs/<name>"]
    result = run([*resume[:3], lava])  # the run with evaluation off: resuming a finished run redoes nothing
    assert "done already" in result.stderr
    assert evaluate[2:] == ["runs/<name>", "[runs/<other>", "...]"]
    result = run([*evaluate[:2], shifted, lava, "--no-plots"])
    assert f"wrote {shifted}/eval.json" in result.stdout and f"wrote {lava}/eval.json" in result.stdout
    # tensorboard: its own argument parser accepts the command (serving it is not this test's business)
    from tensorboard import program

    assert tensorboard[2] == "runs/<name>/tensorboard"
    board = program.TensorBoard()
    board.configure(argv=[None, *tensorboard[1:2], f"{lava}/tensorboard"])
    assert board.flags.logdir == f"{lava}/tensorboard"


def _run_web_labelling(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    """The `--labeller web` command blocks on a person: a scripted client answers its page over HTTP
    (tests/preferences/test_web.py drives the real page in headless Chromium)."""
    import importlib.util

    from .preferences.web_client import answer_until_exit, wait_for_url

    assert command[2:] == ["--labels", "preferences", "--labeller", "web", "--budget", "30", "--initial-fraction",
                           "0.5"]
    if importlib.util.find_spec("fastapi") is None and os.environ.get("RUAGENT_REQUIRE_BROWSER") != "1":
        return  # the web extra is not installed here (CI installs it and sets RUAGENT_REQUIRE_BROWSER=1)
    small = _small(command, **{"labels.segment_length": "5", "baselines": "[]", "eval.enabled": "false"})
    stderr = cwd / "web.err"
    with stderr.open("w") as err:
        process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *small[2:]], cwd=cwd, env=env,
                                   stdout=subprocess.DEVNULL, stderr=err)
    try:
        answered = answer_until_exit(wait_for_url(stderr, process), process)
        assert process.wait(timeout=60) == 0, stderr.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    log = stderr.read_text()
    assert "fitted on 15 preference labels" in log and f"refitted on {answered} preference labels" in log, log
    assert answered > 15  # some were asked while the agent trained


def test_set_up_commands_match_ci_and_the_default_run_is_tested():
    """The set-up block: its pip lines are what CI runs (test above); `python train.py` itself is the
    default experiment, run with small budgets by tests/cli/test_train_cli.py and in full by its slow test."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme.split("## Set-up and the two commands", 1)[1], re.DOTALL).group(1)
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert [c.rsplit("&& ", 1)[1] for c in commands] == ["python train.py", "python -m pytest"]
    tests = (ROOT / "tests/cli/test_train_cli.py").read_text(encoding="utf-8")
    assert "def test_tiny_default_run_writes_the_run_folder_and_prints_its_table" in tests
    assert "def test_full_default_run_avoids_lava_where_the_mean_agent_does_not" in tests


def test_every_benchmark_row_names_a_committed_result_file_or_says_it_has_none():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Benchmarks", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| benchmark")]
    assert len(rows) >= 8
    for row in rows:
        last = row.rstrip(" |").rsplit("|", 1)[1]
        files = re.findall(r"\]\(([^)]+)\)", last)
        assert files or "none yet" in last, f"benchmark row names no result file: {row[:80]}"
        for name in files:
            assert (ROOT / name).is_file(), f"{name} (named in README Benchmarks) is not in the repository"

