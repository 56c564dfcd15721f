"""`shipsft chat` through a real pseudo-terminal (the stdlib pty module): each streamed reply equals eval's own greedy
generation (eval.generate) for the conversation so far, rendered as eval renders prompts; /reset forgets the history,
/system sets the system message, /exit quits; --prompt answers once."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest
import torch
from helpers import Notes, write_tiny_run

from shipsft.config import load_config
from shipsft.data.types import Example

MAX_NEW = 6


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from shipsft.train.run import run_train

    root = tmp_path_factory.mktemp("chat")
    suite = {"name": "toy", "data": str(root / "eval.jsonl"), "max_new_tokens": 8}
    path = write_tiny_run(root, eval={"suites": [suite], "kl_to_base": False, "forgetting_probe": False})
    assert run_train(load_config(path), config_path=path, progress=Notes()) == 0
    return root / "runs" / "t"


@pytest.fixture(scope="module")
def expected(run_dir):
    """What eval generates for a conversation: its prompt rendering (build_items) and stop rule, eval.generate."""
    from shipsft.eval.generate import generate
    from shipsft.eval.items import build_items, eval_renderer, stop_ids
    from shipsft.export.source import open_run, training_renderer
    from shipsft.model.load import load_trained

    src = open_run(run_dir)
    renderer = training_renderer(src)
    model = load_trained(src.cfg.model, src.cfg.method, src.weights, torch.device("cpu"))
    stop = stop_ids(renderer.tokenizer, model, renderer)
    er = eval_renderer(renderer.tokenizer, src.cfg.data)

    def reply(messages: list[dict]) -> str:
        ex = Example(source="chat", messages=messages + [{"role": "assistant", "content": "-"}])
        [item] = build_items(er, [ex])
        [out] = generate(model, renderer.tokenizer, [item.prompt_ids], stop_ids=stop, max_new_tokens=MAX_NEW,
                         batch_size=1, amp=None)
        return out

    return reply


class Terminal:
    """A child process on a pseudo-terminal: write lines, read until a marker (no pexpect needed)."""

    def __init__(self, args: list[str]):
        self.master, slave = pty.openpty()
        env = {**os.environ, "SHIPSFT_ALLOCATOR": "system", "TERM": "dumb"}
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=subprocess.DEVNULL, env=env,
                                     close_fds=True)
        os.close(slave)
        self.buf = ""

    def read_until(self, marker: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} within {timeout} s; got {self.buf!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"the chat ended before {marker!r}; got {self.buf!r}"
                self.buf += chunk.decode("utf-8", errors="replace").replace("\r\n", "\n")
        head, _, self.buf = self.buf.partition(marker)
        return head

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def ask(self, line: str) -> str:
        """Send a message; the streamed reply (what follows 'bot> ' up to the next prompt)."""
        self.send(line)
        self.read_until("bot> ")
        return self.read_until("\nyou> ")


def test_chat_in_a_terminal_streams_eval_identical_replies_with_history_reset_and_system(run_dir, expected):
    t = Terminal([sys.executable, "-m", "shipsft", "chat", str(run_dir), "--max-new-tokens", str(MAX_NEW)])
    try:
        head = t.read_until("you> ")
        assert "chat with t/final: template tokenizer, end of turn '<|im_end|>'" in head and "/reset" in head
        q1, q2 = "reverse: red cat", "reverse: blue dog north"
        a1 = t.ask(q1)
        assert a1 == expected([{"role": "user", "content": q1}])
        a2 = t.ask(q2)  # multi-turn: the second prompt holds the first exchange
        assert a2 == expected([{"role": "user", "content": q1}, {"role": "assistant", "content": a1},
                               {"role": "user", "content": q2}])
        t.send("/reset")
        assert "(conversation cleared)" in t.read_until("you> ")
        a3 = t.ask(q2)  # nothing of the first two turns is left
        assert a3 == expected([{"role": "user", "content": q2}])
        t.send("/system Reverse the words.")
        assert "(system message set)" in t.read_until("you> ")
        assert t.ask(q1) == expected([{"role": "system", "content": "Reverse the words."},
                                      {"role": "user", "content": q2}, {"role": "assistant", "content": a3},
                                      {"role": "user", "content": q1}])
        t.send("/exit")
        assert t.proc.wait(timeout=60) == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
        os.close(t.master)


def test_one_shot_prompt_prints_one_reply_and_exits(run_dir, expected):
    res = subprocess.run([sys.executable, "-m", "shipsft", "chat", str(run_dir), "--prompt", "reverse: one two",
                          "--system", "Be brief.", "--max-new-tokens", str(MAX_NEW)], capture_output=True,
                         text=True, env={**os.environ, "SHIPSFT_ALLOCATOR": "system"}, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "bot> " + expected([{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "reverse: one two"}]) + "\n"
