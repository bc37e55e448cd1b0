"""Where rjsmin may mangle a JS file: a small scanner, and its reasons.

rjsmin (1.3) follows strings and comments but not template literals, and
takes a "/" for a regular expression only after a few characters or
``return``; :func:`js_trouble` finds what it would get wrong. A leaf module:
it imports nothing from the package.
"""

from __future__ import annotations

import re

#: After these characters (or these words) a "/" starts a regular expression.
REGEX_AFTER = set("(,=:[!&|?{};+-*%<>~^")
REGEX_WORDS = {"return", "typeof", "case", "do", "else", "in", "of", "void", "yield"}
REGEX_WORDS.update(("await", "throw", "delete", "new"))
#: Where rjsmin 1.3 reads a "/" as a regular expression: after these, or "return".
RJSMIN_BEFORE = set("(,=:[!&|?{};+*-")
#: What rjsmin changes in a regex it reads as code: white space, a string, a comment.
RISKY = re.compile(r"[\s'\"`]|//|/\*")
SPECIAL = re.compile(r"[`'\"/{}\\$]")
#: Outside templates braces and "$" change nothing (most of a file's).
CODE = re.compile(r"[`'\"/\\]")
#: A string literal, on one line unless a backslash continues it.
STRING = re.compile(r"'(?:[^'\\\n]|\\.)*'" r'|"(?:[^"\\\n]|\\.)*"', re.S)


NESTED = "nested template literals"
#: rjsmin does not see a string, comment or regex inside ``${...}``: the
#: backtick in it ends the template, for rjsmin, and what follows is mangled.
HIDDEN_BACKTICK = "a backtick in a string, comment or regex inside ${...}"
UNFOLLOWED = "template literals it cannot follow"
#: rjsmin reads it as a division: spaces in it go, a "//" in it starts a comment.
MISREAD_REGEX = "a regular expression rjsmin reads as a division"
#: ``var \u0061b`` becomes ``var\u0061b``.
ESCAPED_NAME = "an escape in a name"


def js_trouble(data: bytes) -> str:
    """Why rjsmin may mangle the file ("" if it will not).

    A small scanner over strings, comments, regular expressions and
    templates. On anything it cannot follow it gives a reason: the file is
    then left as it is, which is always safe.
    """
    text = data.decode("utf-8", errors="replace")
    stack: list[str] = []  # "`" in a template, "${" in its expression, "{" a block
    i, n = 0, len(text)
    comment = (0, 0)  # where the last comment ended, and the code before it
    while i < n:
        # Jump to the next character that can change the scanner's state.
        found = (SPECIAL if stack else CODE).search(text, i)
        if found is None:
            break
        i = found.start()
        c = text[i]
        if stack and stack[-1] == "`":
            if c == "\\":
                i += 2
                continue
            if c == "`":
                stack.pop()
            elif text.startswith("${", i):
                stack.append("${")
                i += 2
                continue
            i += 1
            continue
        code = _code_end(text, i)
        if comment[0] and not text[comment[0] : i].strip():
            code = comment[1]  # what a comment follows is what follows it
        comment = (0, 0)
        end = _skipped(text, i, code)
        if end is not None:
            if end < 0:
                return UNFOLLOWED
            if text.startswith(("//", "/*"), i):
                comment = (end, code)
            elif c == "/" and _misread(text, i, end, code):
                return MISREAD_REGEX
            if "${" in stack and text.find("`", i, end) >= 0:
                return HIDDEN_BACKTICK
            i = end
            continue
        if c == "\\":
            return ESCAPED_NAME
        if c == "`":
            if "${" in stack:
                return NESTED
            stack.append("`")
        elif c == "{":
            stack.append("{")
        elif c == "}":
            if not stack:
                return UNFOLLOWED
            stack.pop()
        i += 1
    return UNFOLLOWED if stack else ""


def _skipped(text: str, i: int, code: int) -> int | None:
    """Where the string, comment or regex at ``i`` ends (the index after it);
    -1 if it does not end, None if there is none at ``i``. ``code``: where
    the code before ``i`` ends."""
    c = text[i]
    if c in "\"'":
        string = STRING.match(text, i)
        return -1 if string is None else string.end()
    if text.startswith("//", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end + 1
    if text.startswith("/*", i):
        end = text.find("*/", i + 2)
        return end if end < 0 else end + 2
    if c == "/" and _regex_may_start(text, code):
        end = _regex_end(text, i)
        return end if end < 0 else end + 1
    return None


def _code_end(text: str, i: int) -> int:
    """Where the code before ``i`` ends: white space before ``i`` left out."""
    while i > 0 and text[i - 1] in " \t\r\n":
        i -= 1
    return i


def _regex_may_start(text: str, code: int) -> bool:
    """Whether a "/" after the code ending at ``code`` starts a regex."""
    if text[max(0, code - 2) : code] in ("++", "--"):
        return False  # i++ / 2
    if code == 0 or text[code - 1] in REGEX_AFTER:
        return True
    return _word_before(text, code) in REGEX_WORDS


def _misread(text: str, start: int, end: int, code: int) -> bool:
    """Whether rjsmin takes the regex ``text[start:end]`` for a division and
    mangles it: white space, a quote or a comment start in it."""
    before = text[code - 1] if code else ""
    if before in RJSMIN_BEFORE or _word_before(text, code) == "return":
        return False
    # (From its first character to the one after it: an escaped "/" at its
    # end, as in /a\//, makes a "//" with the closing one.)
    return RISKY.search(text, start + 1, end + 1) is not None


def _word_before(text: str, code: int) -> str:
    """The word that ends at ``code`` ("" if none, or if it is a property:
    ``a.yield`` is no keyword)."""
    start = code
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_$"):
        start -= 1
    return "" if start > 0 and text[start - 1] == "." else text[start:code]


def _regex_end(text: str, start: int) -> int:
    """Index of the "/" closing the regular expression that starts at start."""
    i, in_class = start + 1, False
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "\n":
            return -1
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "/" and not in_class:
            return i
        i += 1
    return -1
