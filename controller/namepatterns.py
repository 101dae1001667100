"""The sets of names a target template or a glob can stand for, and how two such sets relate.

A target name template such as `ci/{user}/aws` stands for every name its placeholders can be
filled with; a guardrail glob such as `ci/*` for every name it matches (`*` is any text, `/`
included). Both become a `Pattern`: a sequence of literal characters and *slots*, each slot a run
of characters of one class. Two questions are answered exactly on these, without enumerating
names:

- `overlaps(a, b)`: can one name be written by both (two policies sharing a target)?
- `covers(glob, template)`: is every name the template can produce matched by the glob?
  This one is sound but may say no for an exotic glob that would in fact cover the template
  (a slot must fall entirely within one `*`); it never says yes wrongly.

Pure: no I/O, no AWS.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CharClass",
    "Pattern",
    "Slot",
    "covers",
    "glob_pattern",
    "overlaps",
    "template_pattern",
    "to_glob",
]

_IAM_USER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+=,.@-")
_DIGITS = frozenset("0123456789")


class CharClass(enum.Enum):
    """What a slot's characters may be."""

    ANY = "any"  # a glob's `*`
    IAM_USER = "iam-user"  # `{user}`: an IAM user name, never containing `/`
    DIGITS = "digits"  # `{account}`: a 12-digit account id

    def admits(self, char: str) -> bool:
        if self is CharClass.ANY:
            return True
        return char in (_IAM_USER_CHARS if self is CharClass.IAM_USER else _DIGITS)


@dataclass(frozen=True)
class Slot:
    """A run of characters of `char_class`: at least one unless `may_be_empty`."""

    char_class: CharClass
    may_be_empty: bool


Token = str | Slot
Pattern = tuple[Token, ...]

_STAR = Slot(CharClass.ANY, may_be_empty=True)


def glob_pattern(glob: str) -> Pattern:
    """A guardrail glob: `*` is any text (`/` included, possibly empty); all else is literal."""
    return tuple(_STAR if char == "*" else char for char in glob)


def template_pattern(
    template: str,
    *,
    policy: str,
    account: str | None = None,
    user: str | None = None,
) -> Pattern:
    """The names a target template can produce.

    `{policy}` is always known. `{account}` and `{user}` are filled in when given, else they are
    slots: any account id, any IAM user name.
    """
    out: list[Token] = []
    rest = template
    while rest:
        for placeholder, value, char_class in (
            ("{user}", user, CharClass.IAM_USER),
            ("{policy}", policy, None),
            ("{account}", account, CharClass.DIGITS),
        ):
            if rest.startswith(placeholder):
                if value is not None:
                    out.extend(value)
                elif char_class is not None:
                    out.append(Slot(char_class, may_be_empty=False))
                rest = rest[len(placeholder) :]
                break
        else:
            out.append(rest[0])
            rest = rest[1:]
    return tuple(out)


def to_glob(pattern: Pattern) -> str:
    """The pattern as an IAM ARN glob: every slot becomes `*` (IAM's `*` is any text)."""
    text = ""
    for token in pattern:
        if isinstance(token, Slot):
            if not text.endswith("*"):
                text += "*"
        else:
            text += token
    return text


def _expand(pattern: Pattern) -> tuple[Token, ...]:
    """A non-empty slot becomes one mandatory character and an optional run of the same class."""
    out: list[Token] = []
    for token in pattern:
        if isinstance(token, Slot) and not token.may_be_empty:
            out.append(Slot(token.char_class, may_be_empty=False))
            out.append(Slot(token.char_class, may_be_empty=True))
        else:
            out.append(token)
    return tuple(out)


def _compatible(a: Token, b: Token) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, str):
        assert isinstance(b, Slot)
        return b.char_class.admits(a)
    if isinstance(b, str):
        return a.char_class.admits(b)
    # Two classes: ANY meets all; IAM user names include the digits.
    return True


def _is_run(token: Token) -> bool:
    return isinstance(token, Slot) and token.may_be_empty


def overlaps(a: Pattern, b: Pattern) -> bool:
    """Whether some name is produced by both patterns.

    A search over pairs of positions (the product of the two patterns as automata), iterative so
    that names of thousands of characters need no deep recursion.
    """
    p, q = _expand(a), _expand(b)
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(p) and j == len(q):
            return True
        here_p = p[i] if i < len(p) else None
        here_q = q[j] if j < len(q) else None
        if here_p is not None and _is_run(here_p):
            todo.append((i + 1, j))
            if here_q is not None and _compatible(here_p, here_q):
                todo.append((i, j + 1))
        if here_q is not None and _is_run(here_q):
            todo.append((i, j + 1))
            if here_p is not None and _compatible(here_p, here_q):
                todo.append((i + 1, j))
        if (
            here_p is not None
            and here_q is not None
            and not _is_run(here_p)
            and not _is_run(here_q)
            and _compatible(here_p, here_q)
        ):
            todo.append((i + 1, j + 1))
    return False


def covers(glob: Pattern | str, template: Pattern) -> bool:
    """Whether every name `template` produces matches `glob` (sound, see the module doc)."""
    g = glob_pattern(glob) if isinstance(glob, str) else glob
    t: Sequence[Token] = template
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(g):
            if j == len(t):
                return True
            continue
        token = g[i]
        if isinstance(token, Slot):
            # A glob `*` absorbs any run of the template's tokens, slots included.
            todo.append((i + 1, j))
            if j < len(t):
                todo.append((i, j + 1))
        elif j < len(t) and t[j] == token:
            todo.append((i + 1, j + 1))
    return False
