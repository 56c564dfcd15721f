"""`shipsft chat RUN_OR_MODEL [--prompt TEXT] [--system TEXT] [--max-new-tokens N]`: chat with a fine-tune.

A run folder chats with its shipped adapter on the base, rendered with the run's training template; a model folder
(e.g. an export's hf/), a .gguf or `smollm2` with its own template. Replies stream token by token (greedy) and stop at
the end-of-turn token. Commands: /reset (forget the conversation), /system TEXT (set the system message; /system
alone removes it), /exit (or Ctrl-D). Ctrl-C stops a reply. --prompt answers one message and exits.

    shipsft chat runs/quickstart
    shipsft chat runs/quickstart --prompt "New order from Oslo: Ada Berg, 31, bought 2 blue cups."
"""
from __future__ import annotations

import sys
from typing import Optional

import typer

from shipsft.cli.console import VerboseOpt
from shipsft.errors import ShipError

HELP = "/reset clears the conversation, /system TEXT sets the system message (/system alone removes it), /exit quits"
YOU, BOT = "you> ", "bot> "


def reply(cm, messages: list[dict], max_new_tokens: int, out=sys.stdout) -> str:
    """Stream one reply to `out`; returns its text (what was printed, even when interrupted)."""
    from shipsft.export.chat import stream_reply

    out.write(BOT)
    out.flush()
    try:
        text = stream_reply(cm, messages, max_new_tokens, out)
    except KeyboardInterrupt:
        out.write(" (interrupted)")
        text = ""
    out.write("\n")
    out.flush()
    return text


def run_chat(spec: str, prompt: str | None, system: str | None, max_new_tokens: int) -> int:
    from shipsft.export.chat import load_chat_model
    from shipsft.model.precision import pick_device

    # a chat screen, not a log: the libraries' bars and deprecation notes are kept off it (`quiet`, unless -v)
    cm = load_chat_model(spec, pick_device())
    head = [{"role": "system", "content": system}] if system else []
    if prompt is not None:
        reply(cm, head + [{"role": "user", "content": prompt}], max_new_tokens)
        return 0
    print(f"chat with {cm.describe()}")
    if cm.note:
        print(f"note: {cm.note}")
    print(HELP)
    try:  # line editing and history for input(); without it CPython writes input()'s prompt to stderr
        import readline  # noqa: F401
    except ImportError:
        pass
    history: list[dict] = []
    while True:
        try:
            line = input(YOU)
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            history = []
            print("(conversation cleared)")
            continue
        if text == "/system" or text.startswith("/system "):
            body = text[len("/system"):].strip()
            head = [{"role": "system", "content": body}] if body else []
            print(f"(system message {'set' if body else 'removed'})")
            continue
        if text.startswith("/"):
            print(f"unknown command {text.split()[0]}; {HELP}")
            continue
        user = {"role": "user", "content": line}
        answer = reply(cm, head + history + [user], max_new_tokens)
        history += [user, {"role": "assistant", "content": answer}]


def chat(
    model: str = typer.Argument(..., help="A run folder, a model folder (e.g. RUN/export/hf), a .gguf, "
                                                "a hub id (org/name), or 'smollm2'"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Answer this one message and exit"),
    system: Optional[str] = typer.Option(None, "--system", help="System message"),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Longest reply in tokens"),
    verbose: bool = VerboseOpt,
) -> None:
    """Chat in the terminal with the trained template: streaming greedy replies, /reset, /system, multi-turn."""
    from shipsft.cli.console import fail, quiet

    with quiet(verbose):
        try:
            code = run_chat(model, prompt, system, max_new_tokens)
        except ShipError as e:
            fail(e)
    raise typer.Exit(code or 0)
