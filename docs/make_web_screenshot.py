"""Screenshot of the web labeller's page for docs/preferences.md (docs/img/web_labeller.png).

    python docs/make_web_screenshot.py [--out docs/img/web_labeller.png]

A real query: a Bayesian linear posterior on LavaWorld's terrain features is fitted on 20 synthetic
preference labels from the training map, then expected information gain ranks candidate pairs of
segments from the *test* map (lava on the short route), and the best pair is shown by
:class:`ruagent.preferences.web.WebLabeller` in the system's headless Chromium (Debian's ``chromium``
and ``chromium-driver``; Selenium drives it without network). tests/preferences/test_web.py runs this
script into a temporary folder.
"""

from __future__ import annotations

import argparse
import io
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import ruagent  # noqa: F401  (registers the testbeds)
from ruagent.preferences import learn_reward_from_preferences
from ruagent.preferences.fit import make_fitter
from ruagent.preferences.learn import make_pair_query
from ruagent.preferences.segments import SegmentPairs, candidate_pairs, collect_segments
from ruagent.preferences.session import LabelLog
from ruagent.preferences.web import WebLabeller
from ruagent.reward_models.linear import BayesianLinearRewardModel

OUT = Path(__file__).resolve().parent / "img" / "web_labeller.png"


def headless_chromium(width: int, height: int, chromium: str, driver: str):
    """Selenium's driver of the system's headless Chromium (no Selenium Manager, no network)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


def query_pairs(seed: int = 0) -> tuple[SegmentPairs, np.ndarray, int]:
    """(pairs, their info-gain scores, candidates ranked): the 4 best of 80 candidate pairs."""
    train = gym.make("ruagent/LavaWorld-v0", variant="train")
    model = BayesianLinearRewardModel(train.observation_space, train.action_space, n_members=10, features="env",
                                      prior_reward_scale=2.0, seed=seed)
    learn_reward_from_preferences(train, model, budget=20, segment_length=10, n_rounds=0, seed=seed,
                                  progress_bar=False)
    test = gym.make("ruagent/LavaWorld-v0", variant="test", render_mode="rgb_array")
    model.bind(test)
    pool = collect_segments(test, 40, 10, seed=seed, record_frames=True)
    rng = np.random.default_rng(seed)
    index = candidate_pairs(len(pool), 80, rng)
    query = make_pair_query("info_gain", model, make_fitter(model), seed)
    rows, scores = query.ranked(pool, index, 4, rng)
    return SegmentPairs.from_segments(pool, index[rows]), scores, len(index)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"PNG to write (default {OUT})")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args(argv)
    pairs, scores, candidates = query_pairs()
    labeller = WebLabeller(budget=200, output=io.StringIO())  # the URL is not needed
    log = LabelLog()
    log.record(pairs[np.arange(1)], np.array([1.0]), "random")  # progress shows one earlier answer
    asking = threading.Thread(target=log.ask, args=(labeller, pairs[np.arange(1, 4)], "info_gain"),
                              kwargs={"scores": scores[1:], "context": {"candidates": candidates}}, daemon=True)
    asking.start()
    driver = headless_chromium(1100, 800, args.chromium, args.chromedriver)
    try:
        while labeller.state()["status"] != "query":
            time.sleep(0.05)
        driver.get(labeller.url)
        deadline = time.monotonic() + 60
        # both clips decoded and the page rendered
        while not driver.execute_script(
            "return document.body.dataset.status === 'query' && "
            "[...document.images].every(i => i.complete && i.naturalWidth > 0)"
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the page did not show the query's clips within 60 s")
            time.sleep(0.1)
        time.sleep(0.5)  # a few frames into the animations
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.find_element("tag name", "body").screenshot(str(args.out))  # the page's content, no margin below
        labeller.act(labeller.state()["query"]["id"], "stop")
    finally:
        driver.quit()
        asking.join(timeout=10)
        labeller.close()
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
