"""Torn, corrupt, foreign, too-new and malicious files: a clear error, never code run from the file."""

from __future__ import annotations

import base64
import json
import pickle
import struct
import zipfile
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO

from ruagent.cli.checkpoints import latest_checkpoint, load_without_unpickling
from ruagent.reward_models.base import FORMAT_VERSION, RewardModelFileError, load_reward_model
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.reward_models.linear import BayesianLinearRewardModel
from tests.helpers import call_main

from .strategies import RandomSpaceEnv

OBSERVATION_SPACE = spaces.Dict(
    {"position": spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32), "phase": spaces.Discrete(3, start=1)}
)
ACTION_SPACE = spaces.Discrete(2)
FAMILIES = ("ensemble", "linear")
N_CORRUPTIONS = 25


class TouchOnUnpickle:
    """A pickle payload: unpickling it calls ``Path(marker).touch()`` (what an attacker's would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def fitted_model_file(tmp_path: Path, family: str) -> Path:
    rng = np.random.default_rng(0)
    n = 16

    def observations():
        return {"position": rng.normal(size=(n, 2)).astype(np.float32), "phase": rng.integers(1, 4, size=n)}

    data = (observations(), rng.integers(0, 2, size=n), observations(), rng.normal(size=n))
    if family == "ensemble":
        model = EnsembleRewardModel(OBSERVATION_SPACE, ACTION_SPACE, n_members=3, hidden_sizes=(8,), seed=0)
        model.fit(data, epochs=2, progress_bar=False)
    else:
        model = BayesianLinearRewardModel(OBSERVATION_SPACE, ACTION_SPACE, n_members=3, seed=0).fit(data)
    path = tmp_path / f"{family}.pt"
    model.save(path)
    return path


# ---------------------------------------------------------------------------- posterior files
@pytest.mark.parametrize("kept", [0.0, 0.05, 0.3, 0.6, 0.95, 0.999])
@pytest.mark.parametrize("family", FAMILIES)
def test_truncated_posterior_file_gives_a_reward_model_file_error_naming_it(tmp_path, family, kept):
    path = fitted_model_file(tmp_path, family)
    content = path.read_bytes()
    path.write_bytes(content[: int(kept * len(content))])

    with pytest.raises(RewardModelFileError, match="truncated, corrupt") as refused:
        load_reward_model(path)
    assert str(path) in str(refused.value)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("family", FAMILIES)
def test_corrupted_bytes_are_refused_or_change_nothing(tmp_path, family):
    # Every flipped byte either surfaces as the declared error (the zip's CRC-32s are checked before
    # torch reads the file: torch's own reader checks none) or lies where it changes nothing the model
    # is built from (e.g. a timestamp): a model that loads predicts exactly what the original did.
    path = fitted_model_file(tmp_path, family)
    original = load_reward_model(path)
    rng = np.random.default_rng(0)
    batch = ({"position": rng.normal(size=(5, 2)).astype(np.float32), "phase": rng.integers(1, 4, size=5)},
             rng.integers(0, 2, size=5))
    expected = original.predict(batch[0], batch[1], batch[0])
    content = bytearray(path.read_bytes())
    outcomes = set()
    # the corruptions of main: positions inside the tensor data, which used to load with other weights
    inside = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if "/data/" in info.filename:  # a tensor's bytes: after the local header, its name and its padding
                start = info.header_offset
                name_length, extra_length = struct.unpack("<HH", content[start + 26 : start + 30])
                inside.append(start + 30 + name_length + extra_length + info.file_size // 2)
    for position in [*rng.choice(len(content), N_CORRUPTIONS, replace=False), *inside]:
        damaged = bytearray(content)
        damaged[position] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            loaded = load_reward_model(path)
        except RewardModelFileError as refused:
            assert str(path) in str(refused)
            outcomes.add("refused")
        else:
            np.testing.assert_array_equal(loaded.predict(batch[0], batch[1], batch[0]), expected)
            outcomes.add("loaded")
    assert "refused" in outcomes


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize(
    "content",
    [b"", b"hello, not a model\n", b"PK\x03\x04" + bytes(40), pickle.dumps({"format": "ruagent.reward_model"})],
    ids=["empty", "text", "zip-header-only", "plain-pickle"],
)
def test_foreign_files_give_a_reward_model_file_error(tmp_path, content):
    path = tmp_path / "reward_model.pt"
    path.write_bytes(content)

    with pytest.raises(RewardModelFileError, match=str(path)):
        load_reward_model(path)


def test_missing_file_gives_a_reward_model_file_error(tmp_path):
    with pytest.raises(RewardModelFileError, match="no reward-model file"):
        load_reward_model(tmp_path / "nowhere.pt")


@pytest.mark.parametrize("family", FAMILIES)
def test_file_from_a_newer_format_version_is_refused_with_its_version(tmp_path, family):
    path = fitted_model_file(tmp_path, family)
    payload = torch.load(path, weights_only=True)
    payload["version"] = FORMAT_VERSION + 1
    torch.save(payload, path)

    with pytest.raises(RewardModelFileError, match=f"version {FORMAT_VERSION + 1}.*Upgrade ruagent"):
        load_reward_model(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("container", ["torch-zip", "legacy-pickle"])
def test_loading_a_posterior_never_runs_a_pickle_payload(tmp_path, container):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "reward_model.pt"
    payload = {"format": "ruagent.reward_model", "version": FORMAT_VERSION, "family": "linear",
               "config": TouchOnUnpickle(marker)}
    if container == "torch-zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    pickle.loads(pickle.dumps(TouchOnUnpickle(marker)))  # the payload is live: plain unpickling runs it
    assert marker.exists()
    marker.unlink()

    with pytest.raises(RewardModelFileError):
        load_reward_model(path)
    assert not marker.exists()


# ---------------------------------------------------------------------------- SB3 model files
@pytest.fixture(scope="module")
def sb3_model_zip(tmp_path_factory) -> Path:
    env = RandomSpaceEnv(spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32), ACTION_SPACE)
    path = tmp_path_factory.mktemp("sb3") / "model.zip"
    PPO("MlpPolicy", env, n_steps=16, batch_size=16, policy_kwargs={"net_arch": [8]}, seed=0, device="cpu").save(path)
    return path


@pytest.mark.parametrize("kept", [0.0, 0.3, 0.9])
def test_truncated_sb3_model_gives_sb3s_error_not_a_deep_traceback(tmp_path, sb3_model_zip, kept):
    torn = tmp_path / "model.zip"
    torn.write_bytes(sb3_model_zip.read_bytes()[: int(kept * len(sb3_model_zip.read_bytes()))])

    with pytest.raises((ValueError, AssertionError), match=r"wasn't a zip-file|No data found"):
        PPO.load(torn, device="cpu")


@pytest.mark.parametrize("kept", [0.0, 0.3, 0.9, 0.99])  # from 0.9 on, policy.pth's own end record survives
def test_torn_checkpoint_is_skipped_for_the_newest_complete_one(tmp_path, sb3_model_zip, kept):
    content = sb3_model_zip.read_bytes()
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "step_000000000016.zip").write_bytes(content)
    (checkpoints / "step_000000000032.zip").write_bytes(content[: int(kept * len(content))])

    assert latest_checkpoint(checkpoints) == (checkpoints / "step_000000000016.zip", 16)


def poisoned_copy(model_zip: Path, target: Path, key: str, payload: object) -> Path:
    """``model_zip`` with the cloudpickle entry ``key`` of its ``data`` replaced by ``payload``."""
    with zipfile.ZipFile(model_zip) as source, zipfile.ZipFile(target, "w") as poisoned:
        for item in source.infolist():
            content = source.read(item)
            if item.filename == "data":
                data = json.loads(content)
                data[key][":serialized:"] = base64.b64encode(cloudpickle.dumps(payload)).decode()
                content = json.dumps(data).encode()
            poisoned.writestr(item, content)
    return target


def test_resuming_a_checkpoint_never_runs_its_pickled_entries(tmp_path, sb3_model_zip):
    marker = tmp_path / "payload-ran"
    poisoned = poisoned_copy(sb3_model_zip, tmp_path / "step_000000000016.zip", "clip_range", TouchOnUnpickle(marker))
    with pytest.raises(AssertionError):  # what the file holds is live: SB3's own load runs it
        PPO.load(poisoned, device="cpu")
    assert marker.exists()
    marker.unlink()
    env = RandomSpaceEnv(spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32), ACTION_SPACE)
    template = PPO("MlpPolicy", env, n_steps=16, batch_size=16, policy_kwargs={"net_arch": [8]}, seed=1, device="cpu")

    loaded = load_without_unpickling(PPO, poisoned, template=template, device="cpu")

    assert not marker.exists()
    saved = PPO.load(sb3_model_zip, device="cpu").policy.state_dict()
    assert all(torch.equal(saved[name], tensor) for name, tensor in loaded.policy.state_dict().items())
    assert loaded.clip_range(1.0) == pytest.approx(0.2)  # the config's schedule, not the file's
    loaded.learn(16, reset_num_timesteps=False)  # and it trains on


def test_sb3_model_with_a_corrupt_policy_member_gives_a_clear_error(tmp_path, sb3_model_zip):
    damaged = tmp_path / "model.zip"
    with zipfile.ZipFile(sb3_model_zip) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, data[: len(data) // 2] if item.filename == "policy.pth" else data)

    with pytest.raises((RuntimeError, ValueError)):
        PPO.load(damaged, device="cpu")


# ---------------------------------------------------------------------------- config files
def run_train(*args: str) -> tuple[int, str]:
    """train.py's main() in this process: (exit status, stderr)."""
    from ruagent.cli.train import main

    code, _, err = call_main(main, *args)
    return code, err


def test_config_with_a_python_tag_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload-ran"
    config = tmp_path / "evil.yaml"
    config.write_text(f"env:\n  id: !!python/object/apply:pathlib.Path.touch [{str(marker)!r}]\n")

    code, err = run_train("--config", str(config), "--print-config")

    assert code == 2 and "not valid YAML" in err and "Traceback" not in err
    assert not marker.exists()


def test_torn_config_is_refused_with_exit_status_2_naming_the_file(tmp_path):
    config = tmp_path / "torn.yaml"
    config.write_text("env:\n  id: ruagent/LavaWorld-v0\nagent:\n  risk: [cv")

    code, err = run_train("--config", str(config), "--print-config")

    assert code == 2 and "torn.yaml" in err and "not valid YAML" in err


def test_resume_of_a_run_with_a_torn_config_is_refused_with_exit_status_2(tmp_path):
    run = tmp_path / "runs" / "torn"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("env:\n  id: ruagent/LavaWorld-v0\nagent:\n  risk: [cv")

    code, err = run_train("--resume", str(run), "--no-progress")

    assert code == 2 and "config.yaml" in err and "Traceback" not in err
