"""Config schema, presets, dotted overrides and validation; run folders; checkpoints."""

from __future__ import annotations

import zipfile

import gymnasium as gym
import pytest
import yaml

from ruagent.cli import config as config_lib
from ruagent.cli.checkpoints import AtomicCheckpointCallback, checkpoint_path, latest_checkpoint
from ruagent.cli.config import ConfigError
from ruagent.cli.run_dir import RunDir, RunExistsError, RunNotFoundError


# ---------------------------------------------------------------------------- schema and presets
def test_defaults_cover_every_schema_key_and_validate():
    config = config_lib.defaults()
    for key in config_lib.SCHEMA:
        assert config_lib.get(config, key) == config_lib.SCHEMA[key].default
    assert config_lib.validate(config) == config


def test_without_config_the_lavaworld_preset_is_the_embedded_default():
    config = config_lib.resolve()
    assert config == config_lib.resolve(config_lib.DEFAULT_PRESET) == config_lib.resolve("lavaworld")
    assert config["env"]["id"] == "ruagent/LavaWorld-v0" and config["agent"]["algo"] == "riskppo"
    assert config["baselines"] == ["mean"]  # a risk-averse and a mean-reward agent


def _preset_param(name: str):
    """A preset as a pytest param, skipped where its testbed's optional extra (mujoco) is absent."""
    import importlib.util

    from ruagent.envs.registration import EXTRAS

    env_id = config_lib.load_config_file(name).get("env", {}).get("id", "")
    if env_id.startswith("ruagent/"):
        extra = EXTRAS.get(env_id.split("/")[-1].split("-")[0])
    else:  # Gymnasium's own MuJoCo envs (HalfCheetah-v5, Hopper-v5) need the extra too
        extra = "mujoco" if str(gym.spec(env_id).entry_point).startswith("gymnasium.envs.mujoco") else None
    missing = extra is not None and importlib.util.find_spec(extra) is None
    return pytest.param(name, marks=pytest.mark.skipif(missing, reason=f"needs pip install 'ruagent[{extra}]'"))


@pytest.mark.parametrize("name", [_preset_param(name) for name in config_lib.preset_names()])
def test_every_preset_validates_and_can_be_built(name):
    from ruagent.cli import factory

    config = config_lib.resolve(name)
    factory.check_buildable(config)  # env id registered, kwargs accepted, algo fits the action space
    assert [spec.name for spec in factory.agent_specs(config)] == ["risk", *config["baselines"]]


def test_help_text_lists_every_key_with_its_default():
    text = config_lib.help_text()
    for key, option in config_lib.SCHEMA.items():
        assert f"  {key}=" in text
        assert option.help in text
    assert "{rewards,preferences}" in text


# ---------------------------------------------------------------------------- overrides
def test_overrides_are_parsed_as_yaml_values():
    config = config_lib.resolve(None, ["agent.risk=entropic", "agent.beta=2", "env.n_envs=3", "progress_bar=false",
                                       "baselines=[mean, oracle]", "agent.hyperparams.n_steps=64",
                                       "env.deploy_kwargs={variant: train}"])
    assert config["agent"]["risk"] == "entropic"
    assert config["agent"]["beta"] == 2.0 and isinstance(config["agent"]["beta"], float)
    assert config["env"]["n_envs"] == 3
    assert config["progress_bar"] is False
    assert config["baselines"] == ["mean", "oracle"]
    # a key inside a mapping option changes that entry only; the preset's other entries stay
    preset = config_lib.resolve()["agent"]["hyperparams"]
    assert config["agent"]["hyperparams"] == {**preset, "n_steps": 64} and preset["n_steps"] != 64
    assert config["env"]["deploy_kwargs"] == {"variant": "train"}


def test_override_values_are_never_evaluated():
    config = config_lib.resolve(None, ["name=__import__('os').system('false')"])
    assert config["name"] == "__import__('os').system('false')"
    with pytest.raises(ConfigError, match="wrong type"):
        config_lib.resolve(None, ["seed=1+1"])


def test_switching_risk_drops_the_presets_unused_parameters():
    assert config_lib.resolve("cartpole")["agent"]["alpha"] == 0.2  # the preset sets cvar's alpha
    config = config_lib.resolve("cartpole", ["agent.risk=mean_std", "agent.lam=0.5"])
    assert (config["agent"]["alpha"], config["agent"]["lam"]) == (None, 0.5)
    assert config_lib.resolve("cartpole", ["agent.mode=cvar", "agent.risk=mean"])["agent"]["alpha"] == 0.2


def test_later_layers_win(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"seed": 5, "agent": {"risk": "worst"}}))
    config = config_lib.resolve(path, ["seed=6"])
    assert config["seed"] == 6
    assert config["agent"]["risk"] == "worst"
    assert config["agent"]["algo"] == "riskppo"  # untouched keys keep their defaults


# ---------------------------------------------------------------------------- errors name key and choices
@pytest.mark.parametrize(
    ("overrides", "must_contain"),
    [
        (["agent.alph=0.1"], ["'agent.alph'", "Did you mean 'agent.alpha'", "agent.risk"]),
        (["agent.risk=cvra"], ["agent.risk", "Did you mean 'cvar'", "mean_std", "entropic"]),
        (["reward_model.family=ensembel"], ["reward_model.family", "'ensemble'", "linear"]),
        (["baselines=[mean, oracel]"], ["baselines", "'oracle'"]),
        (["env.n_envs=0"], ["env.n_envs", ">= 1"]),
        (["agent.alpha=1.5"], ["agent.alpha", "<= 1"]),
        (["labels.budget=many"], ["labels.budget", "int"]),
        (["seed=true"], ["seed", "wrong type"]),
        (["agent.beta=2"], ["agent.beta", "agent.alpha", "agent.risk"]),
        (["nonsense=1"], ["'nonsense'", "seed", "agent.*"]),
        (["agent.risk"], ["key=value"]),
    ],
)
def test_bad_keys_and_values_name_the_key_and_the_choices(overrides, must_contain):
    with pytest.raises(ConfigError) as error:
        config_lib.resolve(None, overrides)
    for text in must_contain:
        assert text in str(error.value)


def test_bad_keys_in_a_config_file_are_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("agent:\n  risk: cvar\n  alhpa: 0.1\n")
    with pytest.raises(ConfigError, match=r"agent\.alpha"):
        config_lib.resolve(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        config_lib.resolve(path)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="lavaworld"):
        config_lib.load_config_file("lavawrold")


def test_dump_round_trips():
    config = config_lib.resolve("cartpole", ["seed=3"])
    assert config_lib.validate(yaml.safe_load(config_lib.dump(config))) == config


# ---------------------------------------------------------------------------- run folders
def test_run_dir_refuses_to_overwrite_unless_forced(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.write_config(config_lib.defaults())
    (run.path / "marker").write_text("old")
    with pytest.raises(RunExistsError, match="--force"):
        RunDir.create(tmp_path / "run")
    RunDir.create(tmp_path / "run", force=True)
    assert not (tmp_path / "run" / "marker").exists()


def test_force_never_deletes_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("...")
    with pytest.raises(RunExistsError, match="not a run folder"):
        RunDir.create(tmp_path / "precious", force=True)
    assert (tmp_path / "precious" / "thesis.tex").exists()


def test_config_yaml_reruns_the_run(tmp_path):
    config = config_lib.resolve("cartpole", ["seed=11", "name=x"])
    run = RunDir.create(tmp_path / "x")
    run.write_config(config)
    assert RunDir.open(run.path).read_config() == config
    assert config_lib.resolve(run.config_path) == config
    with pytest.raises(RunNotFoundError, match="not a run folder"):
        RunDir.open(tmp_path)


# ---------------------------------------------------------------------------- checkpoints
def test_latest_checkpoint_picks_most_steps_and_skips_torn_files(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for steps in (64, 1024, 256):
        with zipfile.ZipFile(checkpoint_path(tmp_path, steps), "w") as archive:
            archive.writestr("data", "{}")
    checkpoint_path(tmp_path, 4096).write_bytes(b"PK\x03\x04 torn")
    path, steps = latest_checkpoint(tmp_path)
    assert steps == 1024 and path == checkpoint_path(tmp_path, 1024)


def test_checkpoints_are_saved_at_rollout_boundaries_and_load(tmp_path):
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    callback = AtomicCheckpointCallback(save_freq=64, folder=tmp_path, keep=2)
    model.learn(32 * 7, callback=callback)
    saved = sorted(tmp_path.glob("step_*.zip"))
    assert [p.name for p in saved] == [checkpoint_path(tmp_path, s).name for s in (128, 192)]  # 2 kept
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind
    restored = PPO.load(saved[-1], device="cpu")
    assert restored.num_timesteps == 192


def test_teacher_choices_are_bpref_teachers_and_bad_combinations_stop_before_training():
    from ruagent.cli import factory
    from ruagent.preferences.labellers import BPREF_TEACHERS, SyntheticLabeller

    assert set(config_lib.SCHEMA["labels.teacher"].choices) == set(BPREF_TEACHERS)
    prefs = ["labels.kind=preferences"]
    config = config_lib.resolve(overrides=[*prefs, "labels.teacher=mistake", "seed=3"])
    factory.check_buildable(config)
    teacher = factory.make_run_labeller(config)
    assert isinstance(teacher, SyntheticLabeller) and teacher.mistake_rate == 0.1 and teacher.rational
    skip = config_lib.resolve(overrides=[*prefs, "labels.teacher=skip", "labels.teacher_scale=20"])
    assert factory.make_run_labeller(skip).skip_threshold == pytest.approx(2.0)
    assert factory.make_run_labeller(config_lib.resolve(overrides=prefs)) is None  # built by name in the stages
    for overrides, message in (
        ([*prefs, "labels.teacher=equal"], "labels.teacher_scale"),
        (["labels.teacher=oracle"], "labels.kind=preferences"),
        ([*prefs, "labels.labeller=human", "labels.teacher=stoc"], "synthetic labeller"),
        ([*prefs, "labels.teacher_scale=3"], "labels.teacher is null"),
    ):
        with pytest.raises(config_lib.ConfigError, match=message):
            factory.check_buildable(config_lib.resolve(overrides=overrides))
