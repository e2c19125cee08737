"""Every repair is logged (one JSON line) and posted to a webhook; `stats` counts the log."""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from alembic_autocopy.workflow import events, notify
from support import BASE_REV, Database, Worktree, make_repo

NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
LOST = "f0000000dead"


@dataclass
class Webhook:
    url: str
    received: list[tuple[str, str | None, bytes]] = field(default_factory=list)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A real HTTP server on 127.0.0.1 that records every POST and answers 204 (Discord)."""
    hook = Webhook(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hook.received.append((self.path, self.headers.get("Content-Type"), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/secret"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there any more: a connection is refused at once


def pair(tmp_path: Path, db: Database) -> tuple[Worktree, Worktree, list[str]]:
    repo = make_repo(tmp_path, db)
    a = repo.add_worktree("a")
    ids = a.chain(2, BASE_REV, "a")
    a.commit("a: two migrations")
    a.alembic("upgrade", "head", check=True)
    return a, repo.main, ids


def log_of(worktree: Worktree) -> list[dict[str, object]]:
    common = worktree.git("rev-parse", "--path-format=absolute", "--git-common-dir").stdout
    found, unreadable = events.read(Path(common.strip()) / events.LOG_NAME)
    assert unreadable == 0
    return found


def test_a_repair_posts_one_notification(tmp_path: Path, sqlite_db: Database,
                                         webhook: Webhook) -> None:
    a, b, ids = pair(tmp_path, sqlite_db)
    ini = b.path / "alembic.ini"
    ini.write_text(ini.read_text("utf-8") + f"\n[alembic-autocopy]\nnotify_url = "
                   f"{webhook.url}\n", "utf-8")

    result = b.autocopy("upgrade", env=NO_PROXY)

    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert len(webhook.received) == 1
    path, content_type, body = webhook.received[0]
    assert path == "/services/T000/B000/secret"
    assert content_type == "application/json"
    message = json.loads(body)
    assert set(message) == {"text", "content"} and message["text"] == message["content"]
    assert message["text"].startswith("alembic-autocopy: brought 2 migration(s) into Proj")
    for rev in ids:
        assert rev in message["text"]
    assert f"worktree {a.path} (a)" in message["text"]
    # nothing to bring: no event, no message
    again = b.autocopy("upgrade", env=NO_PROXY)
    assert again.returncode == 0, again.stderr
    assert len(webhook.received) == 1
    (event,) = log_of(b)
    assert event["outcome"] == "repaired" and event["revisions"] == ids


def test_an_unreachable_webhook_only_warns(tmp_path: Path, sqlite_db: Database) -> None:
    _, b, ids = pair(tmp_path, sqlite_db)
    port = closed_port()
    url = f"http://127.0.0.1:{port}/services/T000/B000/hidden-token"

    result = b.autocopy("upgrade", "--notify-url", url, env=NO_PROXY)

    assert result.returncode == 0, result.stderr
    assert f"warning: notification to http://127.0.0.1:{port}/... not sent" in result.stderr
    assert "hidden-token" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert sqlite_db.versions() == {ids[-1]}
    assert b.alembic("current", check=True).returncode == 0
    (event,) = log_of(b)
    assert event["outcome"] == "repaired"
    json_result = b.autocopy("upgrade", "--json", "--notify-url", url, env=NO_PROXY)
    assert json.loads(json_result.stdout)["ok"] is True  # nothing to do, nothing posted


def test_stats_counts_the_repairs_of_a_session(tmp_path: Path, sqlite_db: Database,
                                               webhook: Webhook) -> None:
    a, b, _ = pair(tmp_path, sqlite_db)
    repo_root = b.path
    c = Worktree(repo_root.parent / "Proj-c")
    b.git("worktree", "add", "--quiet", "-b", "c", str(c.path))
    d = Worktree(repo_root.parent / "Proj-d")
    b.git("worktree", "add", "--quiet", "-b", "d", str(d.path))

    assert b.autocopy("upgrade", "--dry-run").returncode == 0  # not a repair
    assert b.autocopy("upgrade").returncode == 0  # repair 1: 2 revisions
    assert b.autocopy("upgrade").returncode == 0  # nothing to do: not a repair
    assert c.autocopy("upgrade").returncode == 0  # repair 2: 2 revisions
    sqlite_db.execute(f"INSERT INTO alembic_version (version_num) VALUES ('{LOST}')")
    failed = d.autocopy("upgrade", "--notify-url", webhook.url, env=NO_PROXY)
    assert failed.returncode == 1  # failure 1: LOST is found nowhere
    assert d.autocopy("upgrade", "--dry-run").returncode == 1  # a dry run: not counted

    result = a.autocopy("stats", "--json")

    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["repairs"] == 2
    assert stats["revisions_brought_in"] == 4
    assert stats["by_source"] == {"worktree": 4}
    assert stats["by_worktree"] == {str(b.path): 1, str(c.path): 1}
    assert stats["failures"] == 1
    assert stats["failures_by_type"] == {"PlanBlocked": 1}
    assert stats["unreadable_lines"] == 0
    text = a.autocopy("stats", check=True).stdout
    assert "2 repair(s), 4 revision(s) brought in, 1 failure(s)." in text
    assert json.loads(a.autocopy("stats", "--json", "--since", "2999-01-01",
                                 check=True).stdout)["repairs"] == 0
    (post,) = webhook.received
    failure_text = json.loads(post[2])["text"]
    assert failure_text.startswith("alembic-autocopy: repair FAILED in Proj-d (d)")
    assert LOST in failure_text


def test_a_failure_met_again_is_logged_but_posted_once_an_hour(
        tmp_path: Path, sqlite_db: Database, webhook: Webhook) -> None:
    # A hook with --auto-upgrade and a broken database fails on every checkout: the chat
    # channel hears about it once, the log keeps every occurrence.
    _a, b, _ids = pair(tmp_path, sqlite_db)
    sqlite_db.execute(f"INSERT INTO alembic_version (version_num) VALUES ('{LOST}')")
    for _ in range(3):
        assert b.autocopy("upgrade", "--notify-url", webhook.url, env=NO_PROXY).returncode == 1
    assert len(webhook.received) == 1
    assert [event["outcome"] for event in log_of(b)] == ["failed"] * 3

    # Another error is news: posted.
    sqlite_db.execute(f"INSERT INTO alembic_version (version_num) VALUES ('{LOST[:-1]}e')")
    assert b.autocopy("upgrade", "--notify-url", webhook.url, env=NO_PROXY).returncode == 1
    assert len(webhook.received) == 2


def test_run_takes_the_notify_url_too(tmp_path: Path, sqlite_db: Database,
                                      webhook: Webhook) -> None:
    _a, b, ids = pair(tmp_path, sqlite_db)
    result = b.autocopy("run", "--notify-url", webhook.url, "--", sys.executable, "-m",
                        "alembic", "current", env=NO_PROXY)
    assert result.returncode == 0, result.stdout + result.stderr
    (post,) = webhook.received
    assert all(rev in json.loads(post[2])["text"] for rev in ids)
    assert "--notify-url" in b.autocopy("sync", "--help", check=True).stdout


def test_repeated_failure_is_judged_by_worktree_error_and_time() -> None:
    failed = {"outcome": "failed", "worktree": "/w", "error": "boom",
              "time": "2026-01-01T10:00:00+00:00"}
    at_ten = 1767261600.0  # 2026-01-01T10:00:00Z
    assert events.repeated_failure(failed, [failed], at_ten + 3599)
    assert not events.repeated_failure(failed, [failed], at_ten + 3601)  # an hour later
    assert not events.repeated_failure(failed, [{**failed, "worktree": "/v"}], at_ten + 1)
    assert not events.repeated_failure(failed, [{**failed, "error": "other"}], at_ten + 1)
    assert not events.repeated_failure(failed, [{**failed, "time": "garbage"}], at_ten + 1)
    assert not events.repeated_failure({**failed, "outcome": "repaired"}, [failed], at_ten)
    assert not events.repeated_failure(failed, [], at_ten)


def test_recent_reads_only_the_end_of_a_long_log(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    assert events.recent(log) == []
    for number in range(200):
        events.append(log, {"n": number, "pad": "x" * 100})
    tail = events.recent(log, size=1000)
    assert tail and tail[-1]["n"] == 199 and len(tail) < 10
    assert [event["n"] for event in tail] == list(range(200 - len(tail), 200))


def test_concurrent_appends_keep_every_line_whole(tmp_path: Path) -> None:
    log = tmp_path / "common" / events.LOG_NAME
    padding = "x" * 3000  # bigger than a pipe's atomic size: O_APPEND still keeps it whole

    def writer(number: int) -> None:
        for index in range(40):
            events.append(log, {"event": "repair", "outcome": "repaired", "writer": number,
                                "index": index, "padding": padding,
                                "sources": [{"kind": "worktree"}]})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found, unreadable = events.read(log)
    assert unreadable == 0
    assert sorted((e["writer"], e["index"]) for e in found) == [
        (n, i) for n in range(6) for i in range(40)]
    assert events.summarize(found).repairs == 240


def test_summary_skips_what_it_cannot_read(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    events.append(log, {"event": "repair", "outcome": "repaired", "time": "2026-01-02T00:00:00",
                        "worktree": "/w/b", "sources": [{"kind": "branch"}, {"kind": "tag"}]})
    with open(log, "ab") as handle:
        handle.write(b'{"event": "repair", "outcome": "repai')  # a torn line
    found, unreadable = events.read(log)
    summary = events.summarize(found, since="2026-01-01", unreadable=unreadable)
    assert (summary.repairs, summary.revisions_brought_in, summary.unreadable_lines) == (1, 2, 1)
    assert dict(summary.by_source) == {"branch": 1, "tag": 1}
    assert events.read(tmp_path / "missing.jsonl") == ([], 0)


def test_notification_text_and_body() -> None:
    event = {"outcome": "repaired", "worktree": "/home/u/Proj-b", "branch": "feature-b",
             "revisions": ["a1", "a2"], "applied": ["b1"], "heads_after": ["a2", "b1"],
             "sources": [{"source": "worktree /home/u/Proj-a (feature-a)"}]}
    text = notify.message(event)
    assert text == ("alembic-autocopy: brought 2 migration(s) into Proj-b (feature-b): a1, a2 "
                    "(from worktree /home/u/Proj-a (feature-a)); applied 1; database heads "
                    "now a2, b1.")
    body = json.loads(notify.payload("x" * 2500))
    assert len(body["text"]) == 2500 and len(body["content"]) == notify.DISCORD_LIMIT
    assert notify.shown_url("https://hooks.slack.com/services/T/B/key") == (
        "https://hooks.slack.com/...")
    warning = notify.post("file:///etc/passwd", "x")
    assert warning is not None and "https://" in warning
