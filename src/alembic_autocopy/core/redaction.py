"""Secrets never reach the screen, a log, a webhook or a file.

A URL is masked by SQLAlchemy's own URL parser (``make_url``), never by a regular expression
over its text: only the parser knows that in ``postgresql://app@srv:pw@host/db`` the user is
``app@srv`` and the password ``pw``, or that a password may hold a space. The password and
every query parameter that carries a secret (``?password=``, ``?token=``, ...) are hidden.
One correction first: the parser ends the password at its first ``@``, so a hand-written
``u:Xq@9Secret@host`` gives the host ``9Secret@host``, which the driver then quotes in its
error. Here everything before the authority's last ``@`` is the credentials.

Free text (a driver's error message, an exception from env.py) is not a URL: there the
secrets this process has seen (``remember_url``: every URL the tool read or env.py used) are
replaced wherever they appear, in plain and URL-encoded form. A URL-looking word of free text
is also re-rendered through the parser, for URLs the tool never saw.

Terminal output: ``terminal_safe`` escapes control characters (ESC, BEL, newlines, ...) and
bidirectional overrides of text that came from outside (revision ids read from the database,
file names, messages), so it can neither drive the terminal nor forge a line.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

# Imported inside functions, as each saves >= 5 ms where skipped: SQLAlchemy's URL parser only for
# a URL (~300 ms `find` never pays).

MASK = "***"
# Query parameters whose value is a secret (compared lower-case; "contains" for the first).
_SECRET_PARTS = ("password", "passwd", "pwd", "secret", "token", "apikey", "api_key",
                 "credential", "private")
_SECRET_KEYS = frozenset({"pass", "auth", "key", "sig", "signature"})
# Which known secrets are also replaced in free text. Inside a URL every secret is masked
# (the parser says where it is); in free text, replacing the template's "pass" or a dev
# password "postgres" would garble every "password" and "postgresql" on the screen without
# protecting anything worth the name. So: 6 characters at least, and not a plain word
# (a digit, a sign or a space in it) unless 12 characters or more.
MIN_FREE_TEXT_SECRET = 6
PLAIN_WORD_SECRET = 12
_PLACEHOLDER = "AUTOCOPYMASKEDVALUE"

_known: set[str] = set()
# The host SQLAlchemy reads from a password with a raw "@" (``9Secret@host``, what the driver
# quotes), by its masked form (``***@host``): replaced even when the spilled part is short.
_spilled_hosts: dict[str, str] = {}


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in _SECRET_KEYS or any(part in lowered for part in _SECRET_PARTS)


def _parsed(url: Any) -> Any:
    """A SQLAlchemy URL object for ``url`` (a string or a URL), or None if it is none. A
    password with a raw ``@`` is read whole (see ``split_raw_at_password``)."""
    from sqlalchemy.engine import make_url

    split = _raw_at_split(url)
    if split is not None:
        head, password, tail = split
        url = f"{head}{password.replace('@', '%40')}@{tail}"
    try:
        return make_url(url)
    except Exception:  # ArgumentError, ValueError (a port that is no number), ...
        return None


def _raw_at_split(url: Any) -> tuple[str, str, str] | None:
    """``split_raw_at_password`` of a URL string, or of a parsed URL whose host holds an
    ``@`` (its password cut by SQLAlchemy at its first ``@``); None for any other value."""
    if isinstance(url, str):
        return split_raw_at_password(url)
    host = getattr(url, "host", None)
    if not isinstance(host, str) or "@" not in host:
        return None
    return split_raw_at_password(url.render_as_string(hide_password=False))


def split_raw_at_password(url: str) -> tuple[str, str, str] | None:
    """``(scheme://user:, password, host...)`` when the password of ``url`` holds a raw
    ``@``, which SQLAlchemy would end at that ``@``; None otherwise.

    As SQLAlchemy reads it, the user name runs to the first ``:`` (no ``/`` before it) and
    the password to an ``@``; here it runs to the last ``@`` before the ``/`` or ``?`` that
    ends the host. A ``/`` in the password after an ``@`` cannot be told from a path."""
    scheme, sep, rest = url.partition("://")
    colon = rest.find(":")
    slash = rest.find("/")
    if not sep or colon < 0 or 0 <= slash < colon:
        return None
    first_at = rest.find("@", colon)
    if first_at < 0:
        return None
    ends = [index for index in (rest.find("/", first_at), rest.find("?", first_at))
            if index >= 0]
    last_at = rest.rfind("@", first_at, min(ends, default=len(rest)))
    if last_at == first_at:
        return None
    return f"{scheme}://{rest[:colon + 1]}", rest[colon + 1:last_at], rest[last_at + 1:]


def password_holds_unencoded_at(url: Any) -> bool:
    """Does the password of ``url`` (a string or a SQLAlchemy URL) hold a raw ``@``, that
    SQLAlchemy takes for the end of the password (``%40`` is the way to write it)?"""
    return _raw_at_split(url) is not None


def _secrets_of(parsed: Any) -> list[str]:
    found = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if is_secret_key(key):
            found.extend([value] if isinstance(value, str) else list(value))
    return [str(secret) for secret in found if secret]


def remember_url(url: Any) -> None:
    """Learn the secrets of ``url`` (a string or a SQLAlchemy URL): from now on they are
    masked in every text that goes through ``mask_passwords``."""
    if url is None:
        return
    parsed = _parsed(url)
    if parsed is not None:
        _remember(url, parsed)


def _remember(url: Any, parsed: Any) -> None:
    """Learn the secrets of ``parsed``, read from ``url``."""
    for secret in _secrets_of(parsed):
        remember_secret(secret)
    split = _raw_at_split(url)
    if split is not None:
        _remember_spilled(*split)


def _remember_spilled(_head: str, password: str, tail: str) -> None:
    """Learn the forms the driver may quote of a password with a raw ``@``: the password as
    written, each part between its ``@``, and the host SQLAlchemy read (``9Secret@host``)."""
    remember_secret(password)
    for fragment in password.split("@"):
        remember_secret(fragment)
    host = re.split(r"[:/?]", tail, maxsplit=1)[0]
    spilled = password.partition("@")[2]
    if host and spilled:
        _spilled_hosts[f"{spilled}@{host}"] = f"{MASK}@{host}"


def distinctive(secret: str) -> bool:
    """Can ``secret`` be told from ordinary words in free text (see PLAIN_WORD_SECRET)?"""
    return len(secret) >= MIN_FREE_TEXT_SECRET and (
        len(secret) >= PLAIN_WORD_SECRET or not secret.isalpha())


def remember_secret(secret: str) -> None:
    """Mask ``secret`` (and its URL-encoded forms) wherever it appears from now on."""

    if not secret:
        return
    for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
        _known.add(form)


def mask_url(url: Any) -> str:
    """``url`` rendered by SQLAlchemy with its password and query secrets hidden. Not a URL
    SQLAlchemy can read: only its scheme is kept (nothing else can be told safe)."""
    parsed = _parsed(url)
    if parsed is None:
        text = str(url)
        scheme, sep, _rest = text.partition("://")
        return f"{scheme}://{MASK}" if sep else MASK
    _remember(url, parsed)
    secret_keys = {key: _PLACEHOLDER for key in parsed.query if is_secret_key(key)}
    if secret_keys:
        parsed = parsed.update_query_dict(secret_keys)
    rendered: str = parsed.render_as_string(hide_password=True)
    return rendered.replace(_PLACEHOLDER, MASK)


def mask_passwords(text: str) -> str:
    """``text`` with every secret hidden: the known ones wherever they are, and every
    word that SQLAlchemy reads as a URL re-rendered with its secrets masked."""
    for spilled, masked in _spilled_hosts.items():
        if spilled in text:  # whole words only: "ab@10.0.0.9" is no part of "tab@10.0.0.90"
            text = re.sub(rf"(?<![\w.%@-]){re.escape(spilled)}(?![\w-]|\.\w)", masked, text)
    # Known secrets next: a password holding a space is one secret, not two words.
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text and distinctive(secret):
            text = text.replace(secret, MASK)
    if "://" in text:
        text = " ".join(_mask_word(word) if "://" in word else word
                        for word in text.split(" "))
    return text


_QUOTES = "'\"()<>[]{},;`"


def _mask_word(word: str) -> str:
    start, end = 0, len(word)
    while start < end and word[start] in _QUOTES:
        start += 1
    while end > start and word[end - 1] in _QUOTES + ".:":
        end -= 1
    core = word[start:end]
    scheme, sep, rest = core.partition("://")
    if not sep or not scheme or not (scheme[0].isalpha() and all(
            c.isalnum() or c in "+.-" for c in scheme)):
        return word
    if scheme.lower() in ("http", "https") and "@" not in rest and "?" not in rest:
        return word  # a link without credentials: nothing to hide
    return word[:start] + mask_url(core) + word[end:]


# --- terminal output ------------------------------------------------------------------------

_ESCAPES: dict[int, str] = {}


def _escape_table() -> dict[int, str]:
    if not _ESCAPES:
        named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
        for code in [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029,
                     *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F,
                     0x061C, 0xFEFF]:
            char = chr(code)
            _ESCAPES[code] = named.get(char) or (f"\\x{code:02x}" if code < 0x100
                                                 else f"\\u{code:04x}")
    return _ESCAPES


def terminal_safe(text: str) -> str:
    """``text`` with control characters, line breaks and bidirectional overrides escaped
    (``\\x1b``, ``\\n``, ``\\u202e``): what came from outside can neither move the cursor,
    hide what follows, retitle the terminal nor start a line of its own."""
    if text.isprintable():
        return text
    return text.translate(_escape_table())
