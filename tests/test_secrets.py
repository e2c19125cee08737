"""Issue 13 item 4: no secret of a database URL reaches stdout, stderr, the event log, the
webhook or a crash log, whatever the URL looks like (an ``@`` in the user name, a space in
the password, ``?password=`` in the query) and whether the server answers or not."""

from __future__ import annotations

import http.server
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from alembic_autocopy.cli import crash
from alembic_autocopy.core import redaction
from alembic_autocopy.workflow import events
from support import BASE_REV, Database, Worktree, make_repo

NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@dataclass
class Webhook:
    url: str
    bodies: list[bytes] = field(default_factory=list)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A real HTTP server on 127.0.0.1 that keeps every body posted to it."""
    hook = Webhook(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hook.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/HookKey9"
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
    return port


def set_url(worktree: Worktree, url: str) -> None:
    ini = worktree.path / "alembic.ini"
    lines = [f"sqlalchemy.url = {url}" if line.startswith("sqlalchemy.url") else line
             for line in ini.read_text().splitlines()]
    ini.write_text("\n".join(lines) + "\n")


def event_log(worktree: Worktree) -> str:
    common = worktree.git("rev-parse", "--path-format=absolute", "--git-common-dir").stdout
    path = Path(common.strip()) / events.LOG_NAME
    return path.read_text() if path.exists() else ""


def behind(tmp_path: Path, db: Database) -> tuple[Worktree, Worktree]:
    """B (main worktree) lacks the two migrations worktree A applied."""
    repo = make_repo(tmp_path, db)
    a = repo.add_worktree("a")
    a.chain(2, BASE_REV, "a")
    a.commit("a: two migrations")
    a.alembic("upgrade", "head", check=True)
    return a, repo.main


def everything_shown(b: Worktree, hook: Webhook, runs: list[list[str]]) -> tuple[str, int]:
    texts = []
    codes = set()
    for args in runs:
        result = b.autocopy(*args, env=NO_PROXY)
        codes.add(result.returncode)
        if "--json" in args:
            assert isinstance(json.loads(result.stdout), dict)  # one exact JSON document
        texts += [result.stdout, result.stderr]
    texts.append(event_log(b))
    texts += [body.decode("utf-8") for body in hook.bodies]
    return "\n".join(texts), max(codes)


# The secret, and the URL (port filled in) that carries it.
UNREACHABLE = {
    "at-user": ("Az0reS3cret", "postgresql+psycopg://app@srv:Az0reS3cret@127.0.0.1:{port}/db"),
    "space": ("Sp4ce s3cret", "postgresql+psycopg://bob:my Sp4ce s3cret@127.0.0.1:{port}/db"),
    "query": ("Qu3ryS3cret", "postgresql+psycopg://bob@127.0.0.1:{port}/db?password=Qu3ryS3cret"),
    "mariadb-at-user": ("Az0reS3cret", "mysql+pymysql://app@srv:Az0reS3cret@127.0.0.1:{port}/db"),
}


@pytest.mark.parametrize("case", sorted(UNREACHABLE))
def test_no_secret_of_an_unreachable_database_is_shown_logged_or_posted(
        tmp_path: Path, sqlite_db: Database, webhook: Webhook, case: str) -> None:
    secret, url = UNREACHABLE[case]
    _a, b = behind(tmp_path, sqlite_db)
    set_url(b, url.format(port=closed_port()))

    everything, code = everything_shown(b, webhook, [
        ["upgrade", "-v", "--traceback", "--notify-url", webhook.url],
        ["check", "--json"], ["status", "-v"],
    ])

    assert code == 1
    assert "127.0.0.1" in everything  # the errors do name the server
    assert webhook.bodies and "FAILED" in webhook.bodies[0].decode()
    assert '"outcome":"failed"' in event_log(b)
    for part in secret.split():
        assert part not in everything


def test_a_raw_at_in_the_password_shows_no_part_of_it_and_says_how_to_write_it(
        tmp_path: Path, sqlite_db: Database, webhook: Webhook) -> None:
    """A hand-written URL whose password holds a raw ``@``: SQLAlchemy reads the password up
    to the first ``@`` and the rest as the host, which the driver then quotes ("failed to
    resolve host '9%zz%41Secret@127.0.0.1'"). ``%%`` is alembic.ini's escape for ``%``."""
    _a, b = behind(tmp_path, sqlite_db)
    set_url(b, f"postgresql+psycopg://e2e_pw:Xq@9%%zz%%41Secret@127.0.0.1:{closed_port()}/db")

    everything, code = everything_shown(b, webhook, [
        ["check"], ["upgrade", "-v", "--traceback", "--notify-url", webhook.url],
        ["check", "--json"], ["status", "-v"]])

    assert code == 1
    assert "e2e_pw:***@127.0.0.1:" in everything
    assert "unencoded `@`" in everything and "%40" in everything
    for part in ("Secret", "9%zz", "zzA", "Xq@", "Xq%40"):
        assert part not in everything


def test_no_secret_of_a_reachable_database_is_shown_logged_or_posted(
        tmp_path: Path, postgresql_db: Database, webhook: Webhook) -> None:
    """PostgreSQL here trusts 127.0.0.1: the password is accepted and ignored, so every
    command runs to the end and prints the database's URL."""
    _a, b = behind(tmp_path, postgresql_db)
    base = postgresql_db.url  # postgresql+psycopg://postgres@127.0.0.1:5432/<name>
    with_password = base.replace("postgres@", "postgres:R3achS3cret@", 1)
    runs = [["status", "-v"], ["check", "--json"], ["list", "--json"]]
    set_url(b, with_password)
    first, first_code = everything_shown(b, webhook, [
        *runs, ["upgrade", "--json", "--notify-url", webhook.url]])
    set_url(b, base + "?password=Qu3ryS3cret&application_name=autocopy")
    second, second_code = everything_shown(b, webhook, runs)

    assert first_code <= 1 and second_code <= 1
    assert "127.0.0.1:5432" in first + second  # status names the database
    assert "R3achS3cret" not in first
    assert "Qu3ryS3cret" not in second
    assert "application_name=autocopy" in second  # only the secret is masked
    assert webhook.bodies and b"brought 2 migration(s)" in webhook.bodies[0]


def test_a_login_refused_by_a_reachable_server_shows_no_secret(
        tmp_path: Path, postgresql_db: Database, webhook: Webhook) -> None:
    """An Azure-style user name (``app@srv``) the server does not know."""
    _a, b = behind(tmp_path, postgresql_db)
    set_url(b, postgresql_db.url.replace("postgres@", "app@srv:Az0reS3cret@", 1))

    everything, code = everything_shown(b, webhook, [
        ["upgrade", "--traceback", "--notify-url", webhook.url], ["status", "--json"]])

    assert code == 1
    assert "app%40srv:***@127.0.0.1:5432" in everything
    assert "Az0reS3cret" not in everything


def test_a_crash_log_is_private_unpredictable_and_masks_argv_and_secrets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    redaction.remember_url("postgresql://app@srv:Cr4shS3cret@db.example/app")
    argv = ["check", "-x", "dburl=postgresql://u:XArgS3cret@h/d", "-xtoken=XTok3nValue",
            "--notify-url", "https://hooks.example/services/HookPathS3cret"]
    try:
        raise RuntimeError("could not use postgresql://app@srv:Cr4shS3cret@db.example/app")
    except RuntimeError:
        first = crash.write_crash_log(argv)
        second = crash.write_crash_log(argv)

    assert first != second  # one new file per crash, never an existing one reused
    for path in (first, second):
        name = os.path.basename(path)
        assert name.startswith("alembic-autocopy-crash-") and os.path.dirname(path) == str(
            tmp_path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        text = Path(path).read_text()
        assert "RuntimeError" in text and "hooks.example" in text and "dburl=***" in text
        for secret in ("Cr4shS3cret", "XArgS3cret", "XTok3nValue", "HookPathS3cret"):
            assert secret not in text


def test_a_crash_log_never_follows_a_planted_symlink(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The old name was predictable (the second of the crash); a symlink planted under it
    must not be written through."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    target = tmp_path / "victim"
    target.write_text("untouched")
    import datetime as _dt

    for offset in range(3):  # the names the old scheme would have used around now
        stamp = (_dt.datetime.now() + _dt.timedelta(seconds=offset)).strftime("%Y%m%d-%H%M%S")
        (tmp_path / f"alembic-autocopy-crash-{stamp}.log").symlink_to(target)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        path = crash.write_crash_log(["list"])

    assert target.read_text() == "untouched"
    assert not os.path.islink(path)


@pytest.mark.parametrize(("url", "hidden", "kept"), [
    ("postgresql://app@srv:pw@host/db", "pw@", "postgresql://app%40srv:***@host/db"),
    ("postgresql://bob:my secret@host/db", "secret", "postgresql://bob:***@host/db"),
    ("mysql://bob@host/db?password=q1&charset=utf8&token=t1", "q1",
     "mysql://bob@host/db?charset=utf8&password=***&token=***"),
])
def test_urls_are_masked_by_sqlalchemy_parsing(url: str, hidden: str, kept: str) -> None:
    assert redaction.mask_url(url) == kept
    text = redaction.mask_passwords(f"error: cannot use {url}: refused")
    assert hidden not in text and kept in text


def test_terminal_safe_escapes_every_control_character() -> None:
    hostile = "a\x1b]0;owned\x07b\x1b[2J\nerror: forged\r\u202ec\x9b"
    safe = redaction.terminal_safe(hostile)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in safe)
    assert safe == "a\\x1b]0;owned\\x07b\\x1b[2J\\nerror: forged\\r\\u202ec\\x9b"


def test_a_plain_word_password_is_masked_in_urls_without_garbling_the_text() -> None:
    """The template's ``user:pass`` and a dev ``postgres:postgres`` hide no word of the
    message; a distinctive password is replaced even outside a URL."""
    redaction.remember_url("driver://user:pass@localhost/dbname")
    redaction.remember_url("postgresql://postgres:postgres@localhost/db")
    redaction.remember_url("postgresql://app:Tr1cky pw@localhost/db")
    text = redaction.mask_passwords(
        "postgresql://postgres:postgres@localhost/db: password authentication failed "
        "for user postgres (it sent Tr1cky pw, Tr1cky%20pw)")
    assert text == ("postgresql://postgres:***@localhost/db: password authentication failed "
                    "for user postgres (it sent ***, ***)")


@pytest.mark.parametrize(("url", "kept"), [
    ("postgresql+psycopg://u:Xq@9%zz%41Secret@h/db", "postgresql+psycopg://u:***@h/db"),
    ("postgresql://app@srv:Rw@9Secret@h:5432/db", "postgresql://app%40srv:***@h:5432/db"),
    ("mysql+pymysql://u:a@b@c@h/db?charset=utf8", "mysql+pymysql://u:***@h/db?charset=utf8"),
    ("postgresql://u:Xq@9:zz@h:5432/db", "postgresql://u:***@h:5432/db"),
])
def test_a_raw_at_in_a_password_is_masked_up_to_the_last_at(url: str, kept: str) -> None:
    """SQLAlchemy ends the password at the first ``@`` and reads the rest as the host: the
    rest of the password was shown, and the driver then quoted it as the host it could not
    find. Everything before the authority's last ``@`` is the credentials."""
    assert redaction.mask_url(url) == kept
    assert redaction.mask_passwords(f"cannot use {url}: refused") == f"cannot use {kept}: refused"


def test_a_raw_at_password_is_masked_where_the_driver_quotes_it_as_the_host() -> None:
    redaction.mask_url("postgresql+psycopg://e2e_pw:Xq@9%zz%41Secret@127.0.0.1:5432/e2e_mini")
    redaction.remember_url("postgresql://u:Kq@ab@10.0.0.9/db")  # a short spilled fragment
    text = redaction.mask_passwords(
        "failed to resolve host '9%zz%41Secret@127.0.0.1': [Errno -2] Name or service not "
        "known; Can't connect to MySQL server on 'ab@10.0.0.9' (tab@10.0.0.90 untouched)")
    assert text == ("failed to resolve host '***@127.0.0.1': [Errno -2] Name or service not "
                    "known; Can't connect to MySQL server on '***@10.0.0.9' "
                    "(tab@10.0.0.90 untouched)")
    assert redaction.password_holds_unencoded_at(
        "postgresql+psycopg://e2e_pw:Xq@9%zz%41Secret@127.0.0.1:5432/e2e_mini")
    assert not redaction.password_holds_unencoded_at("postgresql://app@srv:pw@host/db")
    assert not redaction.password_holds_unencoded_at("postgresql://u:Xq%409@host/db")
