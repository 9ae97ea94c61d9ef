"""The browser labeller: its API (FastAPI's TestClient), its clips, the training callback waiting for it,
and the real page in headless Chromium through a killed and resumed train.py (Selenium)."""

import importlib.util
import io
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from .conftest import LinearRewardWalk
from .web_client import PageClient, headless_chromium, require, wait_for_url

require("fastapi")
require("uvicorn")
require("PIL")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from ruagent.preferences.clips import encode_clip  # noqa: E402
from ruagent.preferences.labellers import LABELLERS, LabellingQuit, make_labeller  # noqa: E402
from ruagent.preferences.segments import SegmentPairs, collect_segments, make_pairs  # noqa: E402
from ruagent.preferences.session import LabelLog  # noqa: E402
from ruagent.preferences.web import WebLabeller  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _pairs(n: int, seed: int = 0, render_mode: str = "rgb_array") -> SegmentPairs:
    env = LinearRewardWalk(horizon=6, render_mode=render_mode)  # some segments padded
    segments = collect_segments(env, 12, 4, seed=seed, record_frames=render_mode is not None)
    return make_pairs(segments, n, np.random.default_rng(seed))


class Asking:
    """``log.ask(labeller, pairs, ...)`` in a thread, as the preference loop runs it while the page answers."""

    def __init__(self, log: LabelLog, labeller: WebLabeller, pairs: SegmentPairs, **kwargs) -> None:
        self.result, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=(log, labeller, pairs), kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, *args, **kwargs) -> None:
        try:
            self.result = args[0].ask(*args[1:], **kwargs)
        except BaseException as exc:  # re-raised in join()
            self.error = exc

    def join(self) -> np.ndarray:
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "log.ask did not return"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def web(monkeypatch):
    """A labeller whose page is served to a TestClient only (no socket)."""
    labeller = WebLabeller(budget=10, output=io.StringIO())
    monkeypatch.setattr(labeller, "start", lambda: labeller.url)
    client = TestClient(labeller.app)
    client.token_params = {"token": labeller.token}  # not client.params: httpx sends those always
    yield labeller, client
    client.close()


def _wait_query(client: TestClient, not_id: str | None = None) -> dict:
    deadline = time.monotonic() + 20
    while True:
        state = client.get("/api/state", params=client.token_params).json()
        if state["status"] == "query" and state["query"]["id"] != not_id:
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.01)


def _post(client: TestClient, query: str, answer: str):
    return client.post("/api/answer", params=client.token_params, json={"query": query, "answer": answer})


# ---------------------------------------------------------------------------- the API
def test_every_route_needs_the_token(web):
    labeller, client = web
    for token in ({}, {"token": "wrong"}, {"token": labeller.token[:-1]}):
        assert client.get("/", params=token).status_code == 403
        assert client.get("/api/state", params=token).status_code == 403
        assert client.get("/api/clip/1-0/0.gif", params=token).status_code == 403
        assert client.post("/api/answer", params=token, json={"query": "1-0", "answer": "left"}).status_code == 403
    assert "token" in client.get("/api/state").json()["detail"]  # says how to get in
    page = client.get("/", params=client.token_params)
    assert page.status_code == 200 and "Which segment is better?" in page.text
    assert "http" not in page.text.split("<script>")[1]  # no CDN, no network: relative requests only
    assert client.get("/api/state", headers={"X-Ruagent-Token": labeller.token}).status_code == 200


def test_each_answer_is_in_the_file_before_the_page_hears_back(web, tmp_path):
    labeller, client = web
    path = tmp_path / "labels.npz"
    log = LabelLog(autosave=path)
    pairs = _pairs(5)
    asking = Asking(log, labeller, pairs, query="disagreement", timestep=-1, scores=np.arange(5.0, 0, -1),
                    context={"candidates": 50})
    expected: list[float] = []
    for answer, label in [("left", 1.0), ("right", 0.0), ("undo", None), ("equal", 0.5), ("skip", np.nan),
                          ("left", 1.0), ("right", 0.0)]:
        state = _wait_query(client)
        response = _post(client, state["query"]["id"], answer)
        assert response.status_code == 200
        expected = expected[:-1] if label is None else [*expected, label]
        saved = LabelLog.load(path, autosave=False)  # already on disk when the response arrives
        np.testing.assert_array_equal(saved.labels, np.array(expected, dtype=np.float32))
        assert response.json()["asked"] == len(expected)
    labels = asking.join()
    np.testing.assert_array_equal(labels, [1.0, 0.5, np.nan, 1.0, 0.0])
    saved = LabelLog.load(path, autosave=False)
    np.testing.assert_array_equal(saved.pairs.obs, pairs.obs)  # the same pairs, in order, without frames
    np.testing.assert_array_equal(saved.scores, [5.0, 4.0, 3.0, 2.0, 1.0])
    assert saved.queries.tolist() == ["disagreement"] * 5 and saved.timesteps.tolist() == [-1] * 5
    assert client.get("/api/state", params=client.token_params).json()["status"] == "waiting"


def test_stop_keeps_the_answers_and_ends_labelling(web, tmp_path):
    labeller, client = web
    log = LabelLog(autosave=tmp_path / "labels.npz")
    asking = Asking(log, labeller, _pairs(4))
    state = _wait_query(client)
    undo = _post(client, state["query"]["id"], "undo").json()
    assert "Nothing to undo" in undo["message"] and undo["query"]["id"] == state["query"]["id"]
    state = _post(client, state["query"]["id"], "left").json()
    assert _post(client, state["query"]["id"], "stop").json()["status"] == "stopped"
    labels = asking.join()
    assert log.quit and np.isfinite(labels).sum() == 1 and len(LabelLog.load(tmp_path / "labels.npz")) == 1
    with pytest.raises(LabellingQuit):  # a stopped labeller answers nothing more in this process
        labeller.label(_pairs(2))


def test_a_stale_query_gets_409_and_only_the_open_query_has_clips(web):
    labeller, client = web
    asking = Asking(LabelLog(), labeller, _pairs(3))
    first = _wait_query(client)["query"]["id"]
    assert _post(client, first, "left").status_code == 200
    stale = _post(client, first, "left")  # a key pressed twice, or a second tab
    assert stale.status_code == 409 and stale.json()["query"]["id"] != first
    assert client.get(f"/api/clip/{first}/0.gif", params=client.token_params).status_code == 404
    current = stale.json()["query"]
    clip = client.get(f"/api/clip/{current['id']}/1.gif", params=client.token_params)
    assert clip.status_code == 200 and clip.headers["content-type"] == "image/gif"
    assert Image.open(io.BytesIO(clip.content)).n_frames == current["steps"][1]
    assert client.get(f"/api/clip/{current['id']}/2.gif", params=client.token_params).status_code == 404
    bad = client.post("/api/answer", params=client.token_params, json={"query": current["id"], "answer": "up"})
    assert bad.status_code == 422
    labeller.act(current["id"], "stop")
    asking.join()


def test_the_page_says_why_the_pair_was_asked(web):
    labeller, client = web
    asking = Asking(LabelLog(), labeller, _pairs(2), query="info_gain", timestep=4096, scores=np.array([0.52, 0.3]),
                    context={"candidates": 80})
    state = _wait_query(client)
    assert state["budget"] == 10 and state["query"]["score"] == pytest.approx(0.52)
    assert state["query"]["reason"] == ("chosen for expected information gain about the reward: 0.52 nats; rank 1 "
                                        "of 80 candidate pairs (at agent step 4096).")
    labeller.act(state["query"]["id"], "stop")
    asking.join()
    labeller2 = WebLabeller(output=io.StringIO())
    labeller2.start = lambda: labeller2.url
    asking = Asking(LabelLog(), labeller2, _pairs(1), query="random", context={"budget": 7})
    while labeller2.state()["status"] != "query":
        time.sleep(0.01)
    state = labeller2.state()
    assert state["budget"] == 7 and state["query"]["score"] is None
    assert state["query"]["reason"].startswith("chosen at random")
    labeller2.act(state["query"]["id"], "stop")
    asking.join()


def test_a_round_that_times_out_records_only_what_was_answered(web, tmp_path):
    labeller, client = web
    log = LabelLog(autosave=tmp_path / "labels.npz")
    asking = Asking(log, labeller, _pairs(4), timeout=0.3)
    _post(client, _wait_query(client)["query"]["id"], "right")
    started = time.monotonic()
    labels = asking.join()
    assert time.monotonic() - started < 5 and not log.quit
    np.testing.assert_array_equal(labels, [0.0, np.nan, np.nan, np.nan])
    assert len(LabelLog.load(tmp_path / "labels.npz")) == 1  # the unanswered pairs are not recorded


def test_segments_without_rgb_frames_are_refused_with_the_fix(web):
    labeller, _ = web
    for pairs in (_pairs(1, render_mode=None), _pairs(1, render_mode="ansi")):
        with pytest.raises(ValueError, match="render_mode='rgb_array'"):
            labeller.label(pairs)


@pytest.mark.parametrize("env_id", ["ruagent/LavaWorld-v0", "ruagent/PointNavigation-v0"])
def test_clips_of_the_testbeds_rgb_frames(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    segments = collect_segments(env, 2, 6, seed=0, record_frames=True)
    frames, mask = segments.frames[0], segments.mask[0].copy()
    mask[4:] = False  # as if the episode had ended: padded steps are left out
    clip = Image.open(io.BytesIO(encode_clip(frames, mask, fps=5)))
    height, width = frames.shape[1:3]
    assert clip.format == "GIF" and clip.n_frames == 4 and clip.info["duration"] == 200
    assert clip.size[0] % width == 0 and clip.size[0] >= 200  # scaled up by an integer factor
    clip.seek(2)
    first = np.asarray(clip.convert("RGB"))[: height * (clip.size[0] // width)]
    scale = clip.size[0] // width
    np.testing.assert_allclose(first[::scale, ::scale].mean(axis=(0, 1)), frames[2].mean(axis=(0, 1)), atol=6)
    with pytest.raises(ValueError, match="rgb_array"):
        encode_clip(np.zeros((3, 4, 4, 3), dtype=np.float32))


def test_make_labeller_and_a_real_server_on_a_free_port():
    assert "web" in LABELLERS
    out = io.StringIO()
    with make_labeller("web", output=out, port=0) as labeller:
        assert isinstance(labeller, WebLabeller)
        url = labeller.start()
        assert labeller.port > 0 and url in out.getvalue() and url.startswith("http://127.0.0.1:")
        client = PageClient(url)
        assert client.state()["status"] == "waiting"
        with pytest.raises(urllib.error.HTTPError) as refused:
            client.get("api/state", token="not-the-token")
        assert refused.value.code == 403
    with pytest.raises(urllib.error.URLError):  # closed
        client.state()


def test_train_py_accepts_the_web_labeller_and_names_the_extra_when_it_is_missing(monkeypatch):
    import importlib.util as util

    from ruagent.cli import config as config_lib
    from ruagent.cli import factory

    config = config_lib.resolve(None, ["labels.kind=preferences", "labels.labeller=web", "labels.web_port=8123",
                                       "labels.wait_timeout=600"])
    factory.check_buildable(config)
    assert factory.labelling_render_mode(config, config["env"]["deploy_kwargs"]) == "rgb_array"
    labeller = factory.make_web_labeller(config)
    assert (labeller.host, labeller.port, labeller.budget) == ("127.0.0.1", 8123, config["labels"]["budget"])
    find_spec = util.find_spec
    monkeypatch.setattr(util, "find_spec", lambda name, *a: None if name == "fastapi" else find_spec(name, *a))
    with pytest.raises(config_lib.ConfigError, match=r"ruagent\[web\]"):
        factory.check_buildable(config)


# ---------------------------------------------------------------------------- during training
def _answer_in_background(labeller: WebLabeller, stop: threading.Event, answer: str = "left") -> threading.Thread:
    def run():
        while not stop.is_set():
            state = labeller.state()
            if state["status"] == "query":
                labeller.act(state["query"]["id"], answer)
            time.sleep(0.005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _train_with(labeller, tmp_path, wait_timeout=None):
    from stable_baselines3 import PPO

    from ruagent.preferences.online import PreferenceLearningCallback
    from ruagent.reward_models.linear import BayesianLinearRewardModel

    env = LinearRewardWalk(horizon=20, render_mode="rgb_array")
    model = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=2,
                                      features=lambda o, a, n: np.asarray(n, dtype=np.float32))
    callback = PreferenceLearningCallback(model, budget=6, segment_length=5, update_every=64, initial_fraction=0.5,
                                          labeller=labeller, session=tmp_path / "labels.npz", record_frames=True,
                                          wait_timeout=wait_timeout, seed=0)
    PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu").learn(256, callback=callback)
    return callback


def test_training_waits_for_the_answers_from_the_page(web, tmp_path):
    labeller, _ = web
    stop = threading.Event()
    thread = _answer_in_background(labeller, stop)
    try:
        callback = _train_with(labeller, tmp_path)
    finally:
        stop.set()
        thread.join()
    log = LabelLog.load(tmp_path / "labels.npz")
    assert len(log) == 6 and log.n_labels == 6 and np.all(log.labels == 1.0) and np.all(log.timesteps >= 64)
    assert callback.last_metrics["n_labels"] == 6


def test_with_a_wait_timeout_training_goes_on_without_answers(web, tmp_path):
    labeller, _ = web
    started = time.monotonic()
    callback = _train_with(labeller, tmp_path, wait_timeout=0.2)
    assert len(callback.log) == 0 and not callback.log.quit
    assert time.monotonic() - started < 60


# ---------------------------------------------------------------------------- the real page in Chromium
def _train_py(*args: str, cwd: Path, stderr: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=stderr.open("w"))


def _press(driver, key: str, timeout: float = 90) -> str:
    """Press ``key`` on the page and wait until it shows another query (or none); the new query id."""
    from selenium.webdriver.common.action_chains import ActionChains

    before = driver.execute_script("return document.body.dataset.query")
    ActionChains(driver).send_keys(key).perform()
    return _wait_page(driver, lambda query, status: query != before and status != "loading", timeout)


def _wait_page(driver, condition, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        query, status = driver.execute_script("return [document.body.dataset.query, document.body.dataset.status]")
        if condition(query, status):
            return query
        assert time.monotonic() < deadline, (query, status, driver.find_element("id", "message").text)
        time.sleep(0.05)


def _next_query(driver) -> str:
    return _wait_page(driver, lambda query, status: status == "query" and bool(query))


def test_browser_keyboard_labels_survive_a_killed_run_and_resume(tmp_path):
    """train.py fit-reward --labeller web on LavaWorld in headless Chromium: five answers by key, an undo, a
    SIGKILL, --resume, the rest by key and click; the label file and the posterior fitted from it."""
    driver = headless_chromium()  # skips without selenium or Chromium (fails in CI, see web_client)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    session = tmp_path / "runs/web/labels/preferences.npz"
    process = _train_py("fit-reward", "--name", "web", "--no-progress", "--labels", "preferences", "--labeller", "web",
                        "--budget", "10", "--query", "info_gain", "--set", "labels.segment_length=5",
                        cwd=tmp_path, stderr=tmp_path / "first.err")
    try:
        driver.get(wait_for_url(tmp_path / "first.err", process))
        _next_query(driver)
        assert "0 of 10 asked" in driver.find_element(By.ID, "count").text
        for key in (Keys.ARROW_LEFT, Keys.ARROW_RIGHT, Keys.ARROW_DOWN, "s"):
            _press(driver, key)
            _next_query(driver)  # the page waits while the next round is chosen
        # the fifth answer opens a round of two (rounds of 2 for a budget of 10), so it can be undone
        fifth = _press(driver, Keys.ARROW_LEFT)
        assert driver.find_element(By.ID, "count").text.startswith("5 of 10 asked (4 answered, 1 skipped)")
        assert "information gain" in driver.find_element(By.ID, "reason").text
        _press(driver, "u")
        assert "Undone" in driver.find_element(By.ID, "message").text and fifth
        before_kill = LabelLog.load(session, autosave=False)
        np.testing.assert_array_equal(before_kill.labels, [1.0, 0.0, 0.5, np.nan])
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        _wait_page(driver, lambda query, status: status == "offline", timeout=30)  # the page says it lost the run
        np.testing.assert_array_equal(LabelLog.load(session, autosave=False).labels, before_kill.labels)

        process = _train_py("--resume", "runs/web", "--no-progress", cwd=tmp_path, stderr=tmp_path / "second.err")
        driver.get(wait_for_url(tmp_path / "second.err", process))
        _next_query(driver)
        assert "4 of 10 asked" in driver.find_element(By.ID, "count").text  # the next unanswered query
        for key in ("e", Keys.ARROW_RIGHT, Keys.ARROW_LEFT, "s", Keys.ARROW_LEFT):
            _press(driver, key)
            _next_query(driver)
        driver.find_element(By.CSS_SELECTOR, "button[data-answer=right]").click()  # the last one by click
        assert process.wait(timeout=120) == 0, (tmp_path / "second.err").read_text()[-3000:]
    finally:
        driver.quit()
        if process.poll() is None:
            process.kill()
    log = LabelLog.load(session, autosave=False)
    np.testing.assert_array_equal(log.labels, [1.0, 0.0, 0.5, np.nan, 0.5, 0.0, 1.0, np.nan, 1.0, 0.0])
    assert log.queries.tolist()[:2] == ["random"] * 2 and set(log.queries.tolist()[2:]) == {"info_gain"}
    assert np.isnan(log.scores[:2]).all() and (log.scores[2:4] >= 0).all()
    assert "fitted on 10 preference labels" in (tmp_path / "second.err").read_text()

    from ruagent.preferences.fit import make_fitter
    from ruagent.reward_models.base import load_reward_model
    from ruagent.reward_models.linear import BayesianLinearRewardModel

    env = gym.make("ruagent/LavaWorld-v0", variant="train")
    saved = load_reward_model(tmp_path / "runs/web/reward_model.pt", env=env)
    fresh = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=4, features="env", seed=0)
    fresh.bind(env)
    metrics = make_fitter(fresh).fit(*log.labelled())
    assert metrics["n_labels"] == 8
    obs, action, next_obs = log.pairs.flat_transitions()
    for posterior in (saved, fresh):
        rewards = posterior.predict(obs, action, next_obs)
        assert rewards.shape == (posterior.n_members, len(obs)) and np.isfinite(rewards).all()


def test_the_docs_screenshot_script_writes_a_png(tmp_path):
    headless_chromium().quit()  # skips (or fails in CI) without Chromium, like the browser test
    spec = importlib.util.spec_from_file_location("make_web_screenshot", ROOT / "docs/make_web_screenshot.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = script.main(["--out", str(tmp_path / "page.png")])
    image = Image.open(out)
    assert image.format == "PNG" and image.size[0] >= 1000
