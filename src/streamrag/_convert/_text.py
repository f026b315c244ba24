"""Text clean-up: control characters, ligatures, accents, line joining with hyphenation undone.

A line that ends with a hyphen is joined to the next without it when the joined word is the more
plausible reading: the joined word was seen elsewhere in the document, or is in an English word
list (GCIDE, from the ``english-words`` package, loaded once on first need) while the hyphenated
form was not seen. When both halves are words and the joined form is unknown (``breadth-first``,
``state-of-the-art``) the hyphen stays.
"""

from __future__ import annotations

import functools
import itertools
import pickle
import re
import unicodedata
from collections import Counter
from importlib import resources

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ue000-\uf8ff\ufffd-\uffff]")
LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})
HYPHEN_MARKS = ("\x02", "\ufffe", "\xad")
# TeX's spacing accents, printed before or after the letter they belong to ("F´ısica", "M ´ exico")
_ACCENTS = {"´": "\u0301", "`": "\u0300", "¨": "\u0308", "ˆ": "\u0302", "˜": "\u0303", "¸": "\u0327", "ˇ": "\u030c"}
_ACCENT_BEFORE = re.compile(r"([´`¨ˆ˜ˇ])\s?([A-Za-zıȷ])")
_ACCENT_SPACED = re.compile(r"(?<=[A-Za-z]) ([´`¨ˆ˜ˇ]) ?(?=[a-zı])")
_ACCENT_AFTER = re.compile(r"([A-Za-zıȷ])([´`¨ˆ˜¸ˇ])(?=\W|$)")
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f"
_CJK_SPACE = re.compile(f"(?<=[{_CJK}]) (?=[{_CJK}])")
_ANY_ACCENT = re.compile(f"[{''.join(_ACCENTS)}]")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


@functools.cache
def english_words() -> frozenset[str]:
    """GCIDE's headwords, lower-case (~114k; ~0.15 s to load, once per process)."""
    try:
        data = resources.files("english_words").joinpath("data", "gcide_alpha_lower.pickle").read_bytes()
        words: set[str] = pickle.loads(data)
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - the package is a dependency
        return frozenset()
    return frozenset(words)


def known(word: str) -> bool:
    """Is ``word`` (lower-case) in the word list, directly or as a regular inflection?"""
    words = english_words()
    if word in words:
        return True
    stems = []
    for suffix, repl in (("s", ""), ("es", ""), ("ies", "y"), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e")):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stems.append(word[: -len(suffix)] + repl)
    for suffix in ("ly", "er", "est", "ness", "al", "ally"):
        if word.endswith(suffix) and len(word) > len(suffix) + 3:
            stems.append(word[: -len(suffix)])
    return any(stem in words for stem in stems)


class Vocabulary:
    """Words seen in a document so far (lower-case), the evidence for hyphen decisions."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, text: str) -> None:
        words = [word.lower() for word in _WORD.findall(text)]
        self.counts.update(words)
        for word in words:
            if "-" in word:
                self.counts.update(f"{a}-{b}" for a, b in itertools.pairwise(word.split("-")))

    def keep_hyphen(self, head: str, tail: str) -> bool:
        """``head-`` at a line end, ``tail`` starting the next line: is the hyphen a real one?"""
        a, b = head.lower(), tail.lower()
        if not a or not b:
            return False
        if self.counts[a + b]:
            return False
        if self.counts[f"{a}-{b}"]:
            return True
        if not a.isascii() or not b.isascii():
            return False
        if known(a + b):
            return False
        return len(a) >= 2 and len(b) >= 2 and known(a) and known(b)


def fix_accents(text: str) -> str:
    if not _ANY_ACCENT.search(text):
        return text

    def compose(letter: str, accent: str) -> str:
        base = {"ı": "i", "ȷ": "j"}.get(letter, letter)
        return unicodedata.normalize("NFC", base + _ACCENTS[accent])

    text = _ACCENT_SPACED.sub(r"\1", text)  # "M ´ exico"
    text = _ACCENT_BEFORE.sub(lambda m: compose(m[2], m[1]), text)
    return _ACCENT_AFTER.sub(lambda m: compose(m[1], m[2]), text)


def clean(text: str) -> str:
    """Ligatures, accents, control characters and spaces tidied; a literal ``$`` escaped as ``\\$``,
    as Mathpix writes it (an unescaped one would open math for every MMD reader, our chunker too)."""
    if "$" in text:
        text = text.replace("$", "\\$")
    if text.isascii() and text.isprintable() and "`" not in text:  # nothing to do but the spaces
        return _SPACES.sub(" ", text).strip() if "  " in text else text.strip()
    text = fix_accents(CONTROL.sub("", text.translate(LIGATURES)))
    text = _SPACES.sub(" ", text).strip()
    return _CJK_SPACE.sub("", text)


_LETTER = re.compile(r"[^\W\d_]")
_HEAD = re.compile(r"^([^\W\d_]+)")
_CJK_CHAR = re.compile(f"[{_CJK}]")


def _hyphenated_word(text: str) -> str | None:
    """The letters before a hyphen (or hyphen mark) that ends ``text``, if any.

    Scans back from the end: a regex search anchored at ``$`` would try every start in the growing
    paragraph, quadratic in its length.
    """
    if not text or text[-1] not in "\x02\ufffe\xad-":
        return None
    start = len(text) - 1
    while start > 0 and _LETTER.match(text[start - 1]):
        start -= 1
    return text[start:-1] or None


def join_lines(pieces: list[str], vocabulary: Vocabulary) -> str:
    """A paragraph's lines joined with spaces, undoing end-of-line hyphenation."""
    out = ""
    for raw in pieces:
        piece = raw.strip()
        if not piece:
            continue
        tail = _hyphenated_word(out)
        head = _HEAD.match(piece)
        if tail and head and piece[:1].islower():  # "ag-" + "gregation", "breadth-" + "first"
            out = out[:-1] + ("-" if vocabulary.keep_hyphen(tail, head[1]) else "")
        elif tail and head:  # "Bose-" + "Einstein", "non-" + "English"
            out = out[:-1] + "-"
        elif out.endswith(HYPHEN_MARKS):
            out = out[:-1] + " "
        elif out and not (_CJK_CHAR.match(out[-1]) and _CJK_CHAR.match(piece[0])):
            out += " "
        out += piece
    return clean(out)
