"""The password policy: what a new password must be, at registration, change and reset. Pure.

- 8 to 128 characters (the upper bound stops a cheap CPU burn on argon2 and on the estimator);
- not blank (only whitespace);
- not the user's email, the email's local part or their name (case and spaces ignored);
- not common: zxcvbn (the Dropbox strength estimator, offline, with its frequency lists of
  common passwords, names and words) must score it at least MIN_SCORE (2) on its 0-4 scale, with the email and
  name as extra words to avoid. Score 2 means "somewhat guessable": above ~10^6 guesses, which
  the login throttle (5 failures per account per 15 min) puts far out of an online attacker's
  reach; 0 and 1 are the top lists and their simple variations ("password", "12345678",
  "iloveyou1", "Password1").
Each problem is one sentence saying why.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

PASSWORD_MIN = 8
PASSWORD_MAX = 128
MIN_SCORE = 2
# zxcvbn's cost grows with length (~60 ms for 128 repeated characters); the first 72 are
# judged, which is where zxcvbn itself stops by default.
ESTIMATE_LENGTH = 72

TOO_SHORT = f"Ensure this field has at least {PASSWORD_MIN} characters."
TOO_LONG = f"Ensure this field has no more than {PASSWORD_MAX} characters."
BLANK = "The password cannot be blank."
LIKE_EMAIL = "The password is too similar to your email address."
LIKE_NAME = "The password is too similar to your name."
TOO_COMMON = "This password is too common and easy to guess."


def _squash(text: str) -> str:
    return "".join(text.split()).casefold()


def password_problems(password: str, *, email: str = "", full_name: str = "") -> list[str]:
    """Every reason `password` is refused, as sentences; empty when it is acceptable."""
    if len(password) < PASSWORD_MIN:
        return [TOO_SHORT]
    if len(password) > PASSWORD_MAX:
        return [TOO_LONG]
    if not password.strip():
        return [BLANK]
    squashed = _squash(password)
    email_key = _squash(email)
    local_part = email_key.rpartition("@")[0]
    if email_key and squashed in {email_key, local_part}:
        return [LIKE_EMAIL]
    if full_name.strip() and squashed == _squash(full_name):
        return [LIKE_NAME]
    # The user's own words, whole, squashed and split: "annsmith2024" is weak for Ann Smith.
    words = [email, local_part, full_name, _squash(full_name), *full_name.split()]
    words += [part for part in local_part.replace("_", ".").replace("-", ".").split(".")]
    user_inputs = [word for word in words if word]
    result = zxcvbn(password[:ESTIMATE_LENGTH], user_inputs=user_inputs)
    if result["score"] < MIN_SCORE:
        warning = str(result["feedback"].get("warning") or "").strip()
        reason = f"{TOO_COMMON} {warning}" if warning else TOO_COMMON
        return [reason]
    return []
