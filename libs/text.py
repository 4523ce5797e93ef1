"""What characters people-facing text may hold: one rule for names, titles and descriptions
(single line) and for lesson content (multi-line), used by every service's field validation.

Control characters (Unicode category Cc) garble mails, logs and terminals, and bidirectional
embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) make text display in another
order than it is stored ("Trojan Source"). Both are refused. Multi-line text keeps tab, line
feed and CR LF (a form's textarea sends CR LF); a lone CR, which overwrites a line on a
terminal, is refused. U+200E/U+200F (LRM/RLM) are allowed: they only nudge the direction of
neutral characters, and right-to-left text needs them to display correctly.
"""

from __future__ import annotations

import re

CONTROL = "Control characters are not allowed."
BIDI_CONTROL = "Bidirectional override and isolate characters are not allowed."

# Cc is exactly U+0000-U+001F and U+007F-U+009F. Regexes: lesson content runs to 100,000
# characters, and a per-character Python loop over that costs milliseconds.
_SINGLE_LINE_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_MULTI_LINE_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")
_BIDI_CONTROL = re.compile("[\u202a-\u202e\u2066-\u2069]")


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why `value` may not be stored as people-facing text, or None when it may."""
    control = _MULTI_LINE_CONTROL if multiline else _SINGLE_LINE_CONTROL
    if control.search(value):
        return CONTROL
    if _BIDI_CONTROL.search(value):
        return BIDI_CONTROL
    return None
