"""Preference labels from a person in a browser: a local page that shows two segments side by side.

:class:`WebLabeller` is a live :class:`~ruagent.preferences.labellers.Labeller`: the first time it
is asked, it starts a small FastAPI app under uvicorn in a background thread, bound to 127.0.0.1
with a random token that every request must carry (others get 403), and prints the page's URL.
The page plays the two segments of the current query as animations of their ``rgb_array`` frames
(:mod:`ruagent.preferences.clips`), says how many of the budget are asked and why this pair was
chosen (the query strategy's score and rank), and takes answers by click or key: ←/→ the left or
right segment is better, ↓ or ``e`` equally good, ``s`` skip, ``u`` undo, ``q`` stop.

Every answer is written to the session file before the page hears back (through
:class:`~ruagent.preferences.session.LiveBatch`, the same ``.npz`` format as the terminal
labeller's), so a killed server or run loses no answer; the resumed session asks what is left.

The asking thread (the preference loop, or the training callback) waits for the answers: with
``timeout`` (per batch, from :meth:`LabelLog.ask <ruagent.preferences.session.LabelLog.ask>`)
it stops waiting after that many seconds without an answer and the unanswered pairs are not
recorded. ``q`` stops labelling for the rest of this labeller's life (every later batch returns at
once); resuming the run asks the rest of the budget.

Library use::

    with WebLabeller(port=8000) as labeller:
        learn_reward_from_preferences(env, model, budget=50, labeller=labeller, session="labels.npz")

(the env made with ``render_mode="rgb_array"``). Needs the ``web`` extra: ``pip install "ruagent[web]"``.
"""

from __future__ import annotations

import math
import secrets
import socket
import sys
import threading
import time
from importlib import resources
from typing import Any, Literal, TextIO

import numpy as np

try:
    import uvicorn
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(f"the web labeller needs the web extra: pip install \"ruagent[web]\" ({exc})") from exc

from ruagent.preferences.clips import encode_clip
from ruagent.preferences.labellers import Labeller, LabellingQuit
from ruagent.preferences.segments import SegmentPairs
from ruagent.preferences.session import LabelLog, LiveBatch

__all__ = ["ANSWERS", "WebLabeller", "build_app"]

#: what the page sends -> label (None: a command)
ANSWERS: dict[str, float | None] = {"left": 1.0, "right": 0.0, "equal": 0.5, "skip": math.nan, "undo": None,
                                    "stop": None}

_EXPLAIN = {
    "disagreement": "ensemble disagreement: the variance over posterior members of P(left is better) is {score:.3g}",
    "info_gain": "expected information gain about the reward: {score:.3g} nats",
}


class _AnswerBody(BaseModel):
    query: str
    answer: Literal["left", "right", "equal", "skip", "undo", "stop"]


class WebLabeller(Labeller):
    """Ask a person in a browser page, one pair at a time; every answer saved as it arrives.

    :param host: address to listen on. The default 127.0.0.1 keeps the page on this machine (reach it from
        elsewhere through ``ssh -L``); another address is reachable by anyone who has the URL's token.
    :param port: TCP port; 0 picks a free one (printed with the URL).
    :param token: the secret every request must carry (default: ``secrets.token_urlsafe(16)``, new per labeller).
    :param budget: the label budget shown as progress (None: the one the caller passes with each batch).
    :param fps: frames per second of the animations.
    :param output: where the URL is printed (default stderr).
    """

    interactive = True
    live = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        budget: int | None = None,
        fps: float = 6.0,
        output: TextIO | None = None,
    ) -> None:
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"port must be in [0, 65535] (0: pick a free one), got {port}")
        self.host, self.port = host, int(port)
        self.token = token or secrets.token_urlsafe(16)
        self.budget = budget
        self.fps = float(fps)
        self.output = output
        self._cond = threading.Condition()
        self._batch: LiveBatch | None = None
        self._serial = 0  # batches published so far; query ids are "<serial>-<b>"
        self._clips: dict[tuple[str, int], bytes] = {}
        self._stopped = False
        self._error: BaseException | None = None
        self._message = ""
        self._last_activity = 0.0
        self._log: LabelLog | None = None  # the session of the latest batch, for progress between batches
        self._context: dict[str, Any] = {}  # the latest batch's context (its budget), idem
        self._app: FastAPI | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ server
    @property
    def app(self) -> FastAPI:
        """The FastAPI app (built on first use; test it with ``fastapi.testclient.TestClient``)."""
        if self._app is None:
            self._app = build_app(self)
        return self._app

    @property
    def url(self) -> str:
        """The page's address with its token (the port is known once :meth:`start` ran)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def start(self) -> str:
        """Serve the page (idempotent); print and return its URL."""
        if self._server is not None:
            return self.url
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"the web labeller cannot listen on {self.host}:{self.port} ({exc.strerror}); "
                                     "choose another port (train.py: --set labels.web_port=N; 0 picks a free one)"
                          ) from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="ruagent-web-labeller")
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web labeller's server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        # ASCII only: a terminal without UTF-8 must still show the URL
        print(f"preference labels: open {self.url} in a browser (keys: left/right arrow = that segment is better, "
              "down or e = equal, s skip, u undo, q stop)", file=self.output or sys.stderr, flush=True)
        return self.url

    def close(self) -> None:
        """Stop serving (the page then says so). Answers are saved already."""
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = self._thread = None

    def __enter__(self) -> WebLabeller:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ labelling (the asking thread)
    def label(self, pairs: SegmentPairs) -> np.ndarray:
        """Labels (B,) for ``pairs`` without a session file (kept in memory only): see :meth:`label_live`."""
        batch = LiveBatch(LabelLog(), pairs)
        try:
            self.label_live(batch)
        except LabellingQuit:
            raise LabellingQuit(batch.labels) from None
        return batch.labels

    def label_live(self, batch: LiveBatch) -> None:
        """Show ``batch`` on the page and wait until it is answered, stopped (raises
        :class:`LabellingQuit`) or ``batch.timeout`` seconds pass without an answer (returns; the
        pairs not answered are not recorded)."""
        frames = batch.pairs.frames
        if frames is None or frames.dtype != np.uint8 or frames.ndim != 6:
            got = "no frames" if frames is None else f"frames {frames.dtype} {frames.shape}"
            raise ValueError(f"the web labeller shows rgb_array frames (B, 2, T, H, W, 3) uint8, got {got}; make the "
                             "env with render_mode='rgb_array' and collect segments with record_frames=True")
        if self._stopped:
            raise LabellingQuit(batch.labels)
        self.start()
        with self._cond:
            self._serial += 1
            self._batch, self._log, self._context, self._clips = batch, batch.log, batch.context, {}
            self._message = ""
            self._last_activity = time.monotonic()
            self._cond.notify_all()
            try:
                while not (batch.done or self._stopped or self._error is not None):
                    wait = 0.5
                    if batch.timeout is not None:
                        wait = min(wait, self._last_activity + batch.timeout - time.monotonic())
                        if wait <= 0:
                            break  # timed out: the rest of the batch is not recorded
                    self._cond.wait(wait)
            finally:
                self._batch, self._clips = None, {}
            error, self._error = self._error, None
        if error is not None:
            raise error
        if self._stopped:
            raise LabellingQuit(batch.labels)

    # ------------------------------------------------------------------ the page's requests (server threads)
    def state(self, message: str | None = None) -> dict[str, Any]:
        """What the page shows, as JSON: ``status`` (``query``, ``waiting``, ``stopped``), progress and the query."""
        with self._cond:
            batch, log = self._batch, self._log
            asked = len(log) if log is not None else 0
            answered = log.n_labels if log is not None else 0
            budget = self.budget if self.budget is not None else self._context.get("budget")
            state: dict[str, Any] = {"asked": asked, "answered": answered, "budget": budget, "query": None,
                                     "message": self._message if message is None else message}
            if self._stopped:
                state["status"] = "stopped"
            elif batch is None or batch.done:
                state["status"] = "waiting"
            else:
                state["status"] = "query"
                state["query"] = self._query_state(batch)
            return state

    def _query_state(self, batch: LiveBatch) -> dict[str, Any]:
        b = batch.n
        score = float(batch.scores[b])
        candidates = batch.context.get("candidates")
        if math.isnan(score):
            reason = f"chosen at random (query strategy {batch.query!r})" if batch.query else "no score recorded"
        else:
            reason = "chosen for " + _EXPLAIN.get(batch.query, f"its {batch.query} score {{score:.3g}}").format(
                score=score)
            reason += f"; rank {b + 1} of {candidates} candidate pairs" if candidates else f"; rank {b + 1}"
        when = "before training" if batch.timestep < 0 else f"at agent step {batch.timestep}"
        return {"id": f"{self._serial}-{b}", "index": b + 1, "round_size": len(batch),
                "steps": [int(n) for n in batch.pairs.mask[b].sum(axis=-1)], "strategy": batch.query,
                "score": None if math.isnan(score) else score, "reason": f"{reason} ({when}).",
                "can_undo": b > 0}

    def clip(self, query_id: str, side: int) -> bytes:
        """The GIF of one side (0 left, 1 right) of the current query; KeyError if it is not current."""
        if side not in (0, 1):
            raise KeyError(side)
        key = (query_id, side)
        with self._cond:
            batch = self._batch
            if batch is None or batch.done or query_id != f"{self._serial}-{batch.n}":
                raise KeyError(query_id)
            if key in self._clips:
                return self._clips[key]
            frames, mask, clips = batch.pairs.frames[batch.n, side], batch.pairs.mask[batch.n, side], self._clips
        data = encode_clip(frames, mask, self.fps)  # outside the lock: answers need not wait for an encoding
        with self._cond:
            clips[key] = data
        return data

    def act(self, query_id: str, answer: str) -> tuple[int, dict[str, Any]]:
        """Apply one answer or command to the current query: (HTTP status, new state). 409 when ``query_id``
        is not the query shown now (a stale page, a key pressed twice)."""
        if answer not in ANSWERS:
            raise ValueError(f"answer must be one of {sorted(ANSWERS)}, got {answer!r}")
        with self._cond:
            batch = self._batch
            if self._stopped or batch is None or batch.done or query_id != f"{self._serial}-{batch.n}":
                return 409, self.state("That query is no longer open; showing the current one.")
            try:
                if answer == "stop":
                    self._stopped, self._message = True, "Stopped: every answer is saved. Resume the run to label more."
                elif answer == "undo":
                    undone = batch.undo()
                    self._message = (f"Undone: pair {batch.n + 1} again." if undone else
                                     "Nothing to undo in this round: earlier rounds are already fitted.")
                else:
                    batch.answer(ANSWERS[answer])
                    self._message = ""
            except Exception as exc:  # a failed write (disk full): the asking thread raises it
                self._error = exc
                self._cond.notify_all()
                return 500, self.state(f"The answer could not be saved: {exc}")
            self._last_activity = time.monotonic()
            self._cond.notify_all()
        return 200, self.state()


def _page() -> str:
    return resources.files("ruagent.preferences").joinpath("web_page.html").read_text(encoding="utf-8")


def build_app(labeller: WebLabeller) -> FastAPI:
    """The page and its JSON API; every route needs ``?token=`` (or header ``X-Ruagent-Token``), else 403.

    ``GET /`` the page; ``GET /api/state`` the state; ``GET /api/clip/{query}/{side}.gif`` an animation;
    ``POST /api/answer`` with ``{"query": id, "answer": "left"|"right"|"equal"|"skip"|"undo"|"stop"}``.
    """

    def check_token(request: Request) -> None:
        given = request.query_params.get("token") or request.headers.get("x-ruagent-token") or ""
        if not secrets.compare_digest(given.encode(), labeller.token.encode()):
            raise HTTPException(403, "wrong or missing token: open the URL the labeller printed (ending ?token=...)")

    app = FastAPI(title="ruagent preference labels", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(check_token)])
    no_store = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(_page(), headers=no_store)

    @app.get("/api/state")
    def state() -> JSONResponse:
        return JSONResponse(labeller.state(), headers=no_store)

    @app.get("/api/clip/{query_id}/{side}.gif")
    def clip(query_id: str, side: int) -> Response:
        try:
            return Response(labeller.clip(query_id, side), media_type="image/gif", headers=no_store)
        except KeyError:
            raise HTTPException(404, f"no open query {query_id!r} side {side}") from None

    @app.post("/api/answer")
    def answer(body: _AnswerBody) -> JSONResponse:
        status, new_state = labeller.act(body.query, body.answer)
        return JSONResponse(new_state, status_code=status, headers=no_store)

    return app
