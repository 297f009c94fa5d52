"""An Ollama Modelfile beside a GGUF: FROM the file, the chat template as a Go template, the stop tokens.

Ollama renders prompts with Go's text/template over `.Messages` (each with `.Role` and `.Content`), not with the
model's Jinja. A Jinja template is a program, so it is not translated statement by statement; instead the format
it produces is read off renderings with marker contents:

    [system S, user U1, assistant A1, user U2, assistant A2]  ->  P_sys S Q_sys P_user U1 Q_user P_asst A1 Q_asst ...
    [user U1] (+ the generation prompt)                       ->  the user's suffix, a default system prompt if
                                                                  the template adds one, the text that opens the
                                                                  assistant's turn

and written back as one Go template (per role: prefix, `{{ .Content }}`, suffix; then the opening of the
assistant's turn). This covers templates that render each message on its own (ChatML as in builtin:tiny and
Qwen2, Llama 3, Zephyr, ...), including a default system prompt (Qwen2.5). Templates that merge messages (the
system prompt inside the first [INST] of Mistral and Llama 2) are refused with a message.

The translation is then checked: render_go() -- a renderer for exactly the Go template subset written here
(text, `{{ "literal" }}`, `{{ .Content }}`, `{{ .Role }}`, `range` with or without `$i, $_ :=`, `if` /
`else if` / `else` / `end` with `eq` and `ne`, and `{{-` / `-}}` trimming) -- must give the same text as the
Jinja template on CHECK_CONVERSATIONS, or no Modelfile is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from rung.core.errors import RungError

ROLES = ("system", "user", "assistant")
_MARK = {"system": "QZXSYS1", "user": "QZXUSR1", "assistant": "QZXAST1", "user2": "QZXUSR2", "assistant2": "QZXAST2"}

CHECK_CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi {{ there }}"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": 'Quote: "x"\nand a new line\t.'}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
    [{"role": "system", "content": "You answer in SQL."}, {"role": "user", "content": "Count the orders."}],
]

Render = Callable[[list[dict[str, str]], bool], str]


@dataclass(frozen=True)
class ChatFormat:
    prefix: dict[str, str]
    suffix: dict[str, str]
    generation: str                 # opens the assistant's turn (Jinja's add_generation_prompt)
    default_system: str | None      # the system prompt the template adds when a conversation has none


NOT_PER_MESSAGE = ("the chat template does not render each message on its own (it merges messages, e.g. the "
                   "system prompt into the first user turn, or changes their text), so rung cannot translate it "
                   "for Ollama: write the Modelfile's TEMPLATE by hand, or serve the GGUF with llama.cpp, which "
                   "reads the template from the file")


def hf_renderer(tokenizer, *, strip_bos: bool) -> Render:
    """The tokenizer's Jinja chat template as a function; with strip_bos, a leading BOS text is dropped (llama.cpp
    and Ollama add BOS themselves when the file says add_bos_token)."""
    bos = tokenizer.bos_token if strip_bos else None

    def render(messages: list[dict[str, str]], generation: bool) -> str:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        return text[len(bos):] if bos and text.startswith(bos) else text

    return render


def derive_format(render: Render) -> ChatFormat:
    """The per-role format a Jinja template produces (module docstring), or a RungError saying why there is none."""
    m = _MARK
    conversation = [{"role": "system", "content": m["system"]}, {"role": "user", "content": m["user"]},
                    {"role": "assistant", "content": m["assistant"]}, {"role": "user", "content": m["user2"]},
                    {"role": "assistant", "content": m["assistant2"]}]
    try:
        full = render(conversation, False)
        alone = render([{"role": "user", "content": m["user"]}], False)
        alone_open = render([{"role": "user", "content": m["user"]}], True)
    except Exception as error:  # a template that raises (strict alternation, no system role, ...)
        raise RungError(f"{NOT_PER_MESSAGE} (rendering failed: {str(error).splitlines()[0] if str(error) else error})") from None
    pieces = re.split("|".join(m[k] for k in ("system", "user", "assistant", "user2", "assistant2")), full)
    order = re.findall("|".join(m.values()), full)
    if order != [m["system"], m["user"], m["assistant"], m["user2"], m["assistant2"]] or alone.count(m["user"]) != 1:
        raise RungError(NOT_PER_MESSAGE)
    t0, t1, t2, t3, t4, t5 = pieces
    before, q_user = alone.split(m["user"])
    q_asst = t5
    if not (t3.startswith(q_asst) and t2 == t4 and t2.startswith(q_user) and alone_open.startswith(alone)):
        raise RungError(NOT_PER_MESSAGE)
    p_user = t3[len(q_asst):]
    p_asst = t2[len(q_user):]
    if not t1.endswith(p_user):
        raise RungError(NOT_PER_MESSAGE)
    q_sys, p_sys = t1[: len(t1) - len(p_user)], t0
    default = None
    if before != p_user:
        head = before[: len(before) - len(p_user)] if before.endswith(p_user) else None
        if head is None or not head.startswith(p_sys) or not head.endswith(q_sys) or len(head) < len(p_sys) + len(q_sys):
            raise RungError(NOT_PER_MESSAGE)
        default = head[len(p_sys): len(head) - len(q_sys)]
    return ChatFormat(prefix={"system": p_sys, "user": p_user, "assistant": p_asst},
                      suffix={"system": q_sys, "user": q_user, "assistant": q_asst},
                      generation=alone_open[len(alone):], default_system=default)


def _piece(text: str) -> str:
    """Literal text for a Go template: as it is where that is safe, else a quoted Go string literal (JSON's
    escapes -- \\n \\t \\" \\\\ \\uXXXX -- are valid Go escapes)."""
    if not text:
        return ""
    if "{{" in text or "}}" in text or '"""' in text or text.endswith('"'):
        return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"
    return text


def go_template(chat: ChatFormat) -> str:
    """The Go template for a ChatFormat: every message in order, then the opening of the assistant's turn."""
    def turn(role: str) -> str:
        return f"{_piece(chat.prefix[role])}{{{{ .Content }}}}{_piece(chat.suffix[role])}"

    body = (f'{{{{ if eq .Role "system" }}}}{turn("system")}{{{{ else if eq .Role "user" }}}}{turn("user")}'
            f'{{{{ else if eq .Role "assistant" }}}}{turn("assistant")}{{{{ end }}}}')
    if chat.default_system is not None:
        default = _piece(chat.prefix["system"] + chat.default_system + chat.suffix["system"])
        head = f'{{{{ range $i, $_ := .Messages }}}}{{{{ if eq $i 0 }}}}{{{{ if ne .Role "system" }}}}{default}{{{{ end }}}}{{{{ end }}}}'
    else:
        head = "{{ range .Messages }}"
    return f"{head}{body}{{{{ end }}}}{_piece(chat.generation)}"


# ---------------------------------------------------------------------------------------------- Go subset


_ACTION = re.compile(r'\{\{(-\s)?((?:"(?:[^"\\]|\\.)*"|[^"])*?)(\s-)?\}\}', re.S)
_WORD = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')


def _parse(template: str) -> list:
    """Nodes: ("text", s) | ("print", expr) | ("if", [(cond, body), ...], else_body) | ("range", vars, expr, body)."""
    tokens: list[tuple[str, Any]] = []
    position = 0
    for match in _ACTION.finditer(template):
        text = template[position:match.start()]
        if match.group(1):
            text = text.rstrip()
        tokens.append(("text", text))
        tokens.append(("action", match.group(2).strip(), bool(match.group(3))))
        position = match.end()
    tokens.append(("text", template[position:]))
    for index, token in enumerate(tokens):  # "-}}" trims the whitespace that follows
        if token[0] == "action" and token[2] and index + 1 < len(tokens):
            tokens[index + 1] = ("text", tokens[index + 1][1].lstrip())

    def block(index: int, stop: tuple[str, ...]) -> tuple[list, int, str]:
        nodes: list = []
        while index < len(tokens):
            token = tokens[index]
            if token[0] == "text":
                if token[1]:
                    nodes.append(("text", token[1]))
                index += 1
                continue
            words = _WORD.findall(token[1])
            head = words[0] if words else ""
            if head in stop or (head == "else" and "else" in stop):
                return nodes, index, token[1]
            if head == "if":
                branches, else_body = [], []
                condition = words[1:]
                index += 1
                while True:
                    body, index, ended = block(index, ("else", "end"))
                    branches.append((condition, body))
                    index += 1
                    if ended.startswith("else if"):
                        condition = _WORD.findall(ended)[2:]
                        continue
                    if ended == "else":
                        else_body, index, _ = block(index, ("end",))
                        index += 1
                    break
                nodes.append(("if", branches, else_body))
            elif head == "range":
                rest = words[1:]
                variables: list[str] = []
                if ":=" in rest:
                    variables = [v.rstrip(",") for v in rest[: rest.index(":=")]]
                    rest = rest[rest.index(":=") + 1:]
                body, index, _ = block(index + 1, ("end",))
                index += 1
                nodes.append(("range", variables, rest, body))
            else:
                nodes.append(("print", words))
                index += 1
        if stop:
            raise ValueError(f"unclosed block: expected {' or '.join(stop)}")
        return nodes, index, ""

    nodes, _, _ = block(0, ())
    return nodes


def _value(word: str, dot: Any, variables: dict[str, Any]) -> Any:
    if word.startswith('"'):
        return json.loads(word)
    if word.lstrip("-").isdigit():
        return int(word)
    if word.startswith("$"):
        return variables[word]
    if word.startswith("."):
        value = dot
        for part in word[1:].split("."):
            value = value[part]
        return value
    raise ValueError(f"unsupported Go template word {word!r}")


def _evaluate(words: list[str], dot: Any, variables: dict[str, Any]) -> Any:
    if words and words[0] in ("eq", "ne"):
        equal = _value(words[1], dot, variables) == _value(words[2], dot, variables)
        return equal if words[0] == "eq" else not equal
    if len(words) == 1:
        return _value(words[0], dot, variables)
    raise ValueError(f"unsupported Go template expression {' '.join(words)!r}")


def render_go(template: str, messages: list[dict[str, str]]) -> str:
    """Render the Go template subset rung writes, as Ollama would for these messages."""
    root = {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}

    def run(nodes: list, dot: Any, variables: dict[str, Any]) -> str:
        out = []
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "print":
                out.append(str(_evaluate(node[1], dot, variables)))
            elif node[0] == "if":
                for condition, body in node[1]:
                    if _evaluate(condition, dot, variables):
                        out.append(run(body, dot, variables))
                        break
                else:
                    out.append(run(node[2], dot, variables))
            else:
                _, names, expression, body = node
                for index, item in enumerate(_evaluate(expression, dot, variables)):
                    scope = dict(variables)
                    if names:
                        scope[names[0]] = index
                    if len(names) > 1:
                        scope[names[1]] = item
                    out.append(run(body, item, scope))
        return "".join(out)

    return run(_parse(template), root, {"$": root})


# ---------------------------------------------------------------------------------------------- Modelfile


def check_translation(template: str, render: Render) -> list[str]:
    """Problems: conversations on which the Go template and the Jinja template give different text."""
    problems = []
    for index, conversation in enumerate(CHECK_CONVERSATIONS, start=1):
        try:
            expected = render(conversation, True)
        except Exception:  # the Jinja template refuses this shape (e.g. no system role): nothing to compare
            continue
        got = render_go(template, conversation)
        if got != expected:
            problems.append(f"check conversation {index}: Go template gives {got[:80]!r}, the chat template "
                            f"{expected[:80]!r}")
    return problems


def stop_words(tokenizer, chat: ChatFormat, stops: list[int]) -> list[str]:
    """The stop strings: the generation stop tokens, and any special token that closes an assistant turn."""
    specials = [t for t in tokenizer.all_special_tokens if t]
    words = [tokenizer.convert_ids_to_tokens(i) for i in stops]
    words += [t for t in specials if t in chat.suffix["assistant"]]
    return [w for i, w in enumerate(words) if w and w not in words[:i]]


def translate(tokenizer, *, strip_bos: bool) -> tuple[str, ChatFormat]:
    """(Go template, format) for this tokenizer's chat template, checked; a RungError when it cannot be done."""
    if not tokenizer.chat_template:
        raise RungError("--ollama: the model has no chat template to translate")
    render = hf_renderer(tokenizer, strip_bos=strip_bos)
    chat = derive_format(render)
    template = go_template(chat)
    problems = check_translation(template, render)
    if problems:
        raise RungError([NOT_PER_MESSAGE] + problems)
    return template, chat


def modelfile(gguf_name: str, template: str, stops: list[str]) -> str:
    lines = ["# Written by `rung export --ollama`. In this folder: ollama create NAME -f Modelfile",
             "# TEMPLATE is the model's chat template translated into Go template syntax; rung checked that both",
             "# render the same text on sample conversations.",
             f"FROM ./{gguf_name}",
             f'TEMPLATE """{template}"""']
    lines += [f"PARAMETER stop {json.dumps(word, ensure_ascii=False)}" for word in stops]
    return "\n".join(lines) + "\n"


def parse_modelfile(text: str) -> dict[str, Any]:
    """{"from", "template", "stops"} of a Modelfile written by modelfile() (for checks and tests)."""
    match = re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M)
    source = re.search(r"^FROM (.+)$", text, re.M)
    return {"from": source.group(1).strip() if source else None, "template": match.group(1) if match else None,
            "stops": [json.loads(m) for m in re.findall(r"^PARAMETER stop (.+)$", text, re.M)]}
