"""A reasoning model's thinking, told apart from its reply as the reply streams in.

Models of the DeepSeek-R1 kind open their reply with `<think>...</think>` (some with
`<thinking>...</thinking>`; some templates open the tag in the prompt, so that only the closing
tag arrives: `split_forced_open` finds those at the end of the reply); servers that parse it themselves send it apart as `reasoning_content`
(settings_app.engines.Reasoning), which needs no splitting. `ThinkSplitter` takes the reply's
pieces as they arrive, in any cut (a tag may be split across pieces, even one character a piece),
and hands back what is reasoning and what is reply. It keeps at most a tag's length of text
back, and looks at each character a bounded number of times: linear in the reply.
"""

from __future__ import annotations

REASONING, CONTENT = "reasoning", "content"
OPEN_TAGS = ("<think>", "<thinking>")
_LONGEST = max(len(t) for t in OPEN_TAGS)


class ThinkSplitter:
    """Splits a streamed reply into (kind, text) pieces, kind REASONING or CONTENT.

    Only a tag opening the reply (after blank space) starts reasoning: a `<think>` later in the
    reply is the reply's own text. `at_start=False` (continuing a reply that has text) never looks.
    """

    def __init__(self, *, at_start: bool = True):
        self.state = "start" if at_start else "reply"
        self._lead: list[str] = []  # blank space before the first word, given back if no tag follows
        self._held = ""  # a possible start of a tag (opening in "start", closing in "thinking")
        self._close = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while text:
            text = getattr(self, f"_{self.state}")(text, out)
        return out

    def close(self) -> list[tuple[str, str]]:
        """What is still held back, once the reply has ended."""
        out: list[tuple[str, str]] = []
        if self.state == "start":
            self._emit(out, CONTENT, "".join(self._lead) + self._held)
        elif self.state == "thinking":
            self._emit(out, REASONING, self._held)
        self._lead, self._held = [], ""
        return out

    @staticmethod
    def _emit(out: list, kind: str, text: str) -> None:
        if not text:
            return
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))

    # Each state takes the text it is given and returns what is left for the next state.

    def _start(self, text: str, out: list) -> str:
        if not self._held:
            stripped = text.lstrip()
            self._lead.append(text[: len(text) - len(stripped)])
            text = stripped
            if not text:
                return ""
        # At most _LONGEST characters are looked at here before the state changes.
        candidate = self._held + text[:_LONGEST]
        for tag in OPEN_TAGS:
            if candidate.startswith(tag):
                used = len(tag) - len(self._held)
                self.state, self._close = "thinking", "</" + tag[1:]
                self._lead, self._held = [], ""
                return text[used:]
        if any(tag.startswith(candidate) for tag in OPEN_TAGS):
            self._held = candidate  # the whole of text, since it is shorter than a tag
            return ""
        self.state = "reply"
        self._emit(out, CONTENT, "".join(self._lead) + self._held)
        self._lead, self._held = [], ""
        return text

    def _thinking(self, text: str, out: list) -> str:
        buffer = self._held + text
        # Only the new text and at most a tag's length before it are searched.
        at = buffer.find(self._close)
        if at >= 0:
            self._emit(out, REASONING, buffer[:at])
            self._held = ""
            self.state = "after"
            return buffer[at + len(self._close) :]
        keep = 0
        for n in range(min(len(self._close) - 1, len(buffer)), 0, -1):
            if self._close.startswith(buffer[-n:]):
                keep = n
                break
        self._emit(out, REASONING, buffer[: len(buffer) - keep])
        self._held = buffer[len(buffer) - keep :]
        return ""

    def _after(self, text: str, out: list) -> str:
        """Blank space between the closing tag and the reply is dropped."""
        stripped = text.lstrip()
        if stripped:
            self.state = "reply"
        return stripped

    def _reply(self, text: str, out: list) -> str:
        self._emit(out, CONTENT, text)
        return ""


def split_forced_open(text: str) -> tuple[str, str] | None:
    """(reasoning, reply) of a reply whose thinking began in the prompt: templates of the
    DeepSeek-R1 distills end the prompt with `<think>`, so the reply holds only the closing tag.
    None when the reply has no closing tag, or has an opening one before it (then it is text)."""
    for tag in OPEN_TAGS:
        close = "</" + tag[1:]
        at = text.find(close)
        if at >= 0 and tag not in text[:at]:
            return text[:at], text[at + len(close) :].lstrip()
    return None


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, reply) of a whole reply at once."""
    splitter = ThinkSplitter()
    parts = splitter.feed(text) + splitter.close()
    reasoning = "".join(t for kind, t in parts if kind == REASONING)
    reply = "".join(t for kind, t in parts if kind == CONTENT)
    return reasoning, reply
