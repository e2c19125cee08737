"""Tell a chat channel about each repair: one incoming-webhook POST, Slack and Discord alike.

The body carries the text twice, ``{"text": ..., "content": ...}``: Slack reads ``text``,
Discord reads ``content``, and each ignores the other's key, so one ``notify_url`` setting
works for both (and for Mattermost, Rocket.Chat, Teams' Slack-compatible hooks). A post that
fails or takes longer than a few seconds is a warning: the repair it reports has already
happened and stays done. The URL's path is a secret (it is the webhook's key): messages name
the host only.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from alembic_autocopy.core import __version__
from alembic_autocopy.core.redaction import mask_passwords

TIMEOUT_SECONDS = 3.0
DISCORD_LIMIT = 2000  # characters of "content" Discord accepts


def message(event: Mapping[str, Any]) -> str:
    """Pure. One short paragraph about a repair event."""
    where = _where(event)
    if event.get("outcome") == "failed":
        return mask_passwords(_failure(event, where))
    return mask_passwords(_success(event, where) + ".")


def _where(event: Mapping[str, Any]) -> str:
    """The worktree's folder name, with its branch: ``api (feature/x)``."""
    worktree = str(event.get("worktree") or "?")
    name = os.path.basename(worktree.rstrip("/\\")) or worktree
    branch = event.get("branch")
    return f"{name} ({branch})" if branch else name


def _failure(event: Mapping[str, Any], where: str) -> str:
    text = f"alembic-autocopy: repair FAILED in {where}: {event.get('error')}"
    wanted = event.get("wanted") or []
    if wanted:
        text += f" (the database holds {', '.join(wanted)})"
    return text


def _success(event: Mapping[str, Any], where: str) -> str:
    revisions = list(event.get("revisions") or [])
    sources = sorted({str(s.get("source")) for s in event.get("sources") or []
                      if isinstance(s, dict)})
    text = (f"alembic-autocopy: brought {len(revisions)} migration(s) into {where}: "
            f"{', '.join(revisions)}")
    if sources:
        text += f" (from {'; '.join(sources)})"
    applied = event.get("applied") or []
    if applied:
        text += f"; applied {len(applied)}"
    heads = event.get("heads_after") or []
    if heads:
        text += f"; database heads now {', '.join(heads)}"
    return text


def payload(text: str) -> bytes:
    """The webhook body: Slack's ``text`` and Discord's ``content`` (cut to its limit)."""
    content = text if len(text) <= DISCORD_LIMIT else text[: DISCORD_LIMIT - 1] + "…"
    return json.dumps({"text": text, "content": content}).encode("utf-8")


def shown_url(url: str) -> str:
    """``https://hooks.slack.com/...``: the scheme and host, never the secret path."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}/..."


def post(url: str, text: str, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """POST ``text`` to the webhook; None on success, else the warning to show."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        return (f"notify_url must start with https:// (or http://), not {scheme or '?'}:// ; "
                "no notification sent")
    request = urllib.request.Request(
        url, data=payload(text), method="POST",
        headers={"Content-Type": "application/json",
                 "User-Agent": f"alembic-autocopy/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        return f"notification to {shown_url(url)} refused: HTTP {error.code} {error.reason}"
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return f"notification to {shown_url(url)} not sent: {reason}"
    if not 200 <= status < 300:
        return f"notification to {shown_url(url)} refused: HTTP {status}"
    return None
