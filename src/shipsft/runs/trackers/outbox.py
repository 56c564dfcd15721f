"""A tracker that can go away without taking the run with it: after a tracker has started, every call to it (log,
artifacts, close) goes through its `Outbox`, a queue drained by one background thread, so the training loop never
waits on a tracking server.

A call that fails is retried with backoff (1 s, then twice as long each time up to `track.retry_max_s`) until it goes
through; what arrives meanwhile waits in the queue and is sent in order once the server answers again (a queued step
is a dict of a few numbers: an hour of one step a second is a few MB). MLflow's client retries each request itself
first (MLFLOW_HTTP_REQUEST_MAX_RETRIES, 7 by default, about 4 minutes against a server that refuses connections),
inside one try here. At the end of a run the caller waits a bounded time for the queue to drain; an outbox still
behind then is abandoned (its thread is a daemon), and the caller records what it did not deliver.

    box = Outbox(backend, retry_max_s=60, events=events)
    box.put("log", 12, {"loss": 2.1}, step=12, offset=4096)     # returns at once
    box.finish("FINISHED")
    delivered = box.wait(time.monotonic() + 60)                 # False: still behind after 60 s
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Call:
    kind: str  # log | artifacts | close
    args: tuple
    step: int | None = None  # the step of a log call
    offset: int | None = None  # where its record starts in metrics.jsonl (bytes)


class Events(Protocol):
    """What an outbox reports, from its own thread: the first failed call of an outage, and the call that went
    through after it."""

    def down(self, name: str, call: Call, error: BaseException) -> None: ...

    def up(self, name: str, first: Call, last: Call, tries: int) -> None: ...


@dataclass
class Outbox:
    backend: Any
    retry_max_s: float
    events: Events
    queue: queue.Queue = field(default_factory=queue.Queue)
    abandoned: threading.Event = field(default_factory=threading.Event)
    outage: Call | None = None  # the first call of the current outage (None while the backend answers)
    current: Call | None = None  # the call being sent (the first undelivered one when the outbox is abandoned)
    last_error: BaseException | None = None
    thread: threading.Thread | None = None

    def __post_init__(self):
        self.thread = threading.Thread(target=self.drain, daemon=True, name=f"shipsft-tracker-{self.backend.name}")
        self.thread.start()

    @property
    def name(self) -> str:
        return self.backend.name

    def put(self, kind: str, *args, step: int | None = None, offset: int | None = None) -> None:
        self.queue.put(Call(kind, args, step, offset))

    def drain(self) -> None:
        while not self.abandoned.is_set():
            call = self.queue.get()
            if call is None:
                return
            self.send(call)

    def put_mark(self, fn) -> None:
        """Call `fn()` on the outbox's thread once every call queued before it went through."""
        self.queue.put(Call("mark", (fn,)))

    def send(self, call: Call) -> None:
        if call.kind == "mark":
            call.args[0]()
            return
        delay, tries = min(1.0, self.retry_max_s), 0
        self.current = call
        while not self.abandoned.is_set():
            try:
                getattr(self.backend, call.kind)(*call.args)
            except Exception as e:  # a server gone, a timeout, a refused request: keep the call and try again
                tries += 1
                self.last_error = e
                if self.outage is None:
                    self.outage = call
                    self.events.down(self.name, call, e)
                if self.abandoned.wait(delay):
                    return
                delay = min(delay * 2, self.retry_max_s)
                continue
            if self.abandoned.is_set():  # the run stopped waiting: what it recorded as missed stays recorded
                return
            if self.outage is not None:
                self.events.up(self.name, self.outage, call, tries)
                self.outage = None
            self.current = None
            return

    def finish(self, status: str) -> None:
        """Queue the backend's close and the end of the thread."""
        self.put("close", status)
        self.queue.put(None)

    def wait(self, deadline: float) -> bool:
        """Wait until `deadline` (time.monotonic) for the queue to drain. True when it did; False when the outbox was
        abandoned still behind (its first undelivered call is `self.current`)."""
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if self.thread.is_alive():
            self.abandoned.set()
            return False
        return True
