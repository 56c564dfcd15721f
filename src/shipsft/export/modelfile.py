"""An Ollama Modelfile whose TEMPLATE is derived from the trained chat template, and checked before it is written.

Ollama renders prompts with a Go template, not Jinja, so the trained Jinja template has to be translated. A general
translation is impossible; what is possible, and checked, is this: render probe conversations with the training
template and read off the fixed text around each message (`TurnPieces`: what comes before/after a system, user and
assistant message, the generation prompt, and the default system prompt the template writes when none is given).
`render_pieces` re-renders conversations from those pieces; if it reproduces the Jinja template byte for byte on
every probe (system or not, one turn or several, multi-line content), the pieces ARE the template for plain chats, and
the Go template below prints exactly them. Otherwise no TEMPLATE is written and the card says to run llama.cpp with
`--jinja` (which uses the GGUF's embedded template): never a guessed template.

    text, note = modelfile("quickstart-f32.gguf", renderer.template, stops=["<|im_end|>"])
"""
from __future__ import annotations

from dataclasses import dataclass

from shipsft.data.template import ChatTemplate

S, U1, A1, U2, A2 = "shipsftSYS", "shipsftU1", "shipsftA1", "shipsftU2", "shipsftA2"


@dataclass(frozen=True)
class TurnPieces:
    lead: str  # before everything when there is no system block (bos, ...)
    sys_pre: str  # lead + this before a system message ('' lead then: the system block opens the text)
    sys_post: str
    user_pre: str
    user_post: str
    asst_pre: str  # the generation prompt
    asst_post: str  # after an assistant answer that another turn follows
    default_system: str | None  # written when the conversation has no system message; None: nothing is


def render_pieces(p: TurnPieces, messages: list[dict], add_generation_prompt: bool) -> str:
    """What the pieces render for a plain chat (the behaviour the Ollama template implements)."""
    out = p.lead
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else p.default_system
    if system is not None:
        out += p.sys_pre + system + p.sys_post
    for m in messages:
        if m["role"] == "user":
            out += p.user_pre + m["content"] + p.user_post
        elif m["role"] == "assistant":
            out += p.asst_pre + m["content"] + p.asst_post
    return out + (p.asst_pre if add_generation_prompt else "")


def _between(text: str, start: str, end: str) -> str | None:
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    return text[i + len(start):j] if i >= 0 and j >= 0 else None


def turn_pieces(t: ChatTemplate) -> TurnPieces | None:
    """The pieces of `t`, or None when the template is not made of fixed pieces around each message."""
    def u(c):
        return {"role": "user", "content": c}

    def a(c):
        return {"role": "assistant", "content": c}
    try:
        r_u = t.render([u(U1)])
        gen = t.render([u(U1)], add_generation_prompt=True)
        r_ua = t.render([u(U1), a(A1)])
        r_uau = t.render([u(U1), a(A1), u(U2)])
        r_su = t.render([{"role": "system", "content": S}, u(U1)])
    except Exception:  # noqa: BLE001 - a template that refuses these plain chats cannot be expressed as pieces
        return None
    if not (gen.startswith(r_u) and r_uau.startswith(r_ua) and r_ua.startswith(r_u)):
        return None
    asst_pre = gen[len(r_u):]
    user_block = r_uau[len(r_ua):]
    if U2 not in user_block:
        return None
    user_pre, user_post = user_block.split(U2, 1)
    asst_block = r_ua[len(r_u):]
    if not asst_block.startswith(asst_pre) or A1 not in asst_block:
        return None
    asst_post = asst_block[len(asst_pre):].split(A1, 1)[1]
    head = user_pre + U1
    if head not in r_u or head not in r_su or S not in r_su:
        return None
    lead_nosys = r_u[: r_u.index(head)]
    sys_open = r_su[: r_su.index(S)]
    sys_post = _between(r_su, S, head)
    if sys_post is None:
        return None
    if sys_open.startswith(lead_nosys):  # no default system: the lead is what a system-less chat starts with
        lead, sys_pre, default = lead_nosys, sys_open[len(lead_nosys):], None
    elif lead_nosys.startswith(sys_open) and lead_nosys.endswith(sys_post):
        lead, sys_pre = "", sys_open
        default = lead_nosys[len(sys_open): len(lead_nosys) - len(sys_post)]
    else:
        return None
    pieces = TurnPieces(lead, sys_pre, sys_post, user_pre, user_post, asst_pre, asst_post, default)
    return pieces if reproduces(pieces, t) else None


def reproduces(p: TurnPieces, t: ChatTemplate) -> bool:
    sys = {"role": "system", "content": "Be brief.\nAnswer in JSON."}
    chats = [[{"role": "user", "content": "hi"}],
             [{"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "c {\"k\": 1}"},
              {"role": "user", "content": "d"}],
             [sys, {"role": "user", "content": "hi"}],
             [sys, {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
              {"role": "user", "content": "z"}, {"role": "assistant", "content": "w"}]]
    try:
        return all(render_pieces(p, c, g) == t.render(c, add_generation_prompt=g) for c in chats for g in (True, False)
                   if not (g and c[-1]["role"] == "assistant"))
    except Exception:  # noqa: BLE001
        return False


def go_template(p: TurnPieces) -> str | None:
    """The Ollama (Go text/template) form of the pieces: no trim markers, so every piece prints verbatim."""
    pieces = (p.lead, p.sys_pre, p.sys_post, p.user_pre, p.user_post, p.asst_pre, p.asst_post)
    if any("{{" in x or "}}" in x or '"""' in x for x in pieces):
        return None
    # a template that writes a default system prompt always has a system block (SYSTEM in the Modelfile fills it)
    block = f'{p.lead}{p.sys_pre}{{{{ .System }}}}{p.sys_post}'
    optional = f'{{{{ if .System }}}}{block}{{{{ else }}}}{p.lead}{{{{ end }}}}'
    system = block if p.default_system is not None else optional
    return (f'{system}{{{{ range .Messages }}}}{{{{ if eq .Role "user" }}}}{p.user_pre}{{{{ .Content }}}}{p.user_post}'
            f'{{{{ else if eq .Role "assistant" }}}}{p.asst_pre}{{{{ .Content }}}}{p.asst_post}{{{{ end }}}}'
            f'{{{{ end }}}}{p.asst_pre}')


def modelfile(gguf_name: str, template: ChatTemplate, stops: list[str]) -> tuple[str, str]:
    """(Modelfile text, a note for the card: how the template was carried over)."""
    lines = ["# Ollama: ollama create <name> -f Modelfile   (written by shipsft export)", f"FROM ./{gguf_name}"]
    pieces = turn_pieces(template)
    go = go_template(pieces) if pieces is not None else None
    if go is not None:
        lines.append(f'TEMPLATE """{go}"""')
        if pieces.default_system is not None and '"""' not in pieces.default_system:
            lines.append(f'SYSTEM """{pieces.default_system}"""')
        note = ("TEMPLATE derived from the trained chat template; its pieces re-render the Jinja template byte for "
                "byte on system / multi-turn / multi-line probe chats (plain chats: no tools)")
    else:
        note = ("the trained chat template is not fixed text around each message (or cannot be written as an Ollama "
                "template), so the Modelfile has no TEMPLATE: run llama.cpp with --jinja, which uses the template "
                "embedded in the GGUF")
    for s in dict.fromkeys(stops):
        lines.append(f'PARAMETER stop "{s}"')
    lines += ["# greedy decoding, as shipsft's eval and parity check generate", "PARAMETER temperature 0"]
    return "\n".join(lines) + "\n", note
