"""Passwords never reach the screen: every URL's password is masked before printing."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^@\s]*(?=@)")


def mask_passwords(text: str) -> str:
    """Replace the password of every URL in ``text`` by ``***``."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + "***", text)
