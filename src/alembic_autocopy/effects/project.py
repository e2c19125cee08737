"""The project's Alembic configuration, found exactly where ``alembic`` finds it.

Read without importing alembic (importing it costs ~340 ms): ``find`` and ``list --no-db``
only need the version locations. The database side builds Alembic's own ``Config`` from the
same files (see ``database.alembic_config``).
"""

# Annotations evaluated, not strings (no `from __future__ import annotations`): a NamedTuple
# compiles each string field's type at import (tests/test_imports.py says why).

import configparser
import difflib
import glob
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from alembic_autocopy.core.errors import ConfigError

# The parsers (configparser, tomllib) are imported where a file of their kind is read, glob
# and importlib.util where a setting needs them: most projects have one alembic.ini, and a
# git hook should not pay for reading a format the project does not use.
if TYPE_CHECKING:
    import configparser

TOOL_SECTION = "alembic-autocopy"
DEFAULT_MAX_FILE_BYTES = 1_000_000

_SEPARATORS = {"space": " ", "newline": "\n", "os": os.pathsep, ":": ":", ";": ";"}


class ToolSettings(NamedTuple):
    """``[tool.alembic-autocopy]`` in pyproject.toml or ``[alembic-autocopy]`` in the ini."""

    search: tuple[str, ...] = ()  # extra folders, as globs ("~/Proj-*")
    fetch: bool = False
    fetch_timeout: float = 30.0
    trust_database: bool = False
    notify_url: str | None = None
    lock_timeout: float = 120.0
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    base_branch: str | None = None
    allow_untrusted_source: bool = False
    record_table: str = "alembic_autocopy_scripts"
    record: bool = True  # keep each applied migration in the record table
    git_refs: bool = True
    # Version folders to use instead of Alembic's (as the config or env.py sets them).
    version_locations: tuple[str, ...] = ()


class ProjectConfig(NamedTuple):
    """Where the Alembic project is and what Alembic will load."""

    cwd: Path
    ini_path: Path | None  # None when only pyproject.toml configures Alembic
    toml_path: Path | None  # the pyproject.toml Alembic would read (may lack [tool.alembic])
    section: str
    here: Path
    script_location: Path
    version_locations: tuple[Path, ...]
    recursive_version_locations: bool
    sourceless: bool
    x_args: tuple[str, ...]
    tool: ToolSettings

    def search_folders(self) -> list[Path]:
        """Configured extra folders, globs expanded (``~`` too), existing folders only."""
        found: list[Path] = []
        if not self.tool.search:
            return found

        for pattern in self.tool.search:
            expanded = os.path.expanduser(pattern)
            if not os.path.isabs(expanded):
                expanded = str(self.here / expanded)
            for match in sorted(glob.glob(expanded)):
                path = Path(match)
                if path.is_dir() and path not in found:
                    found.append(path)
        return found


def locate_config_files(config_args: Sequence[str], cwd: Path,
                        environ: Mapping[str, str]) -> tuple[Path | None, Path | None]:
    """Return (ini, pyproject) as ``alembic`` would pick them (``CommandLine._inis_from_config``).

    Either may be None when the file does not exist.
    """
    default_ini, default_toml = _default_config_names(environ)
    ini, toml = _given_config_names(config_args)
    ini_path = cwd / (ini or default_ini)
    toml_path = cwd / (toml or default_toml)
    for given, path in ((ini, ini_path), (toml, toml_path)):
        if given is not None and not path.is_file():
            raise ConfigError(f"config file not found: {path}",
                              hint="check the path given with -c/--config")
    return (ini_path if ini_path.is_file() else None,
            toml_path if toml_path.is_file() else None)


def alembic_config_files(config: Any, cwd: Path) -> tuple[str, ...]:
    """The files of an Alembic ``Config`` that exist (names relative to ``cwd``), ini first:
    ``load_project``'s ``config_args`` for the run env.py is part of.

    Alembic's command line names both files whatever exists (``toml_file_name`` is
    ``pyproject.toml`` since 1.16, ``config_file_name`` ``alembic.ini``), and Alembic reads an
    absent one as empty; ``load_project`` would refuse a named file that is absent.
    """
    names = (getattr(config, "config_file_name", None), getattr(config, "toml_file_name", None))
    return tuple(str(name) for name in names if name and (cwd / name).is_file())


def _default_config_names(environ: Mapping[str, str]) -> tuple[str, str]:
    """(ini, pyproject) read when no -c names them: ``ALEMBIC_CONFIG`` may name either."""
    env_config = environ.get("ALEMBIC_CONFIG")
    if env_config and os.path.basename(env_config) == "pyproject.toml":
        return "alembic.ini", env_config
    if env_config:
        return env_config, "pyproject.toml"
    return "alembic.ini", "pyproject.toml"


def _given_config_names(config_args: Sequence[str]) -> tuple[str | None, str | None]:
    """(ini, pyproject) given with -c: at most one of each."""
    ini: str | None = None
    toml: str | None = None
    for name in config_args:
        if os.path.basename(name) == "pyproject.toml":
            if toml is not None:
                raise ConfigError("pyproject.toml was given more than once with -c")
            toml = name
        else:
            if ini is not None:
                raise ConfigError("only one ini file may be given with -c")
            ini = name
    return ini, toml


def load_project(config_args: Sequence[str] = (), section: str = "alembic",
                 x_args: Sequence[str] = (), cwd: Path | None = None,
                 environ: Mapping[str, str] | None = None, *,
                 require_script_folder: bool = True) -> ProjectConfig:
    """Find and read the project's Alembic configuration; raise ConfigError when there is none,
    or when its ``script_location`` does not exist (as Alembic refuses it, unless
    ``require_script_folder`` is False: for a caller that only wants the tool's settings)."""
    cwd = (cwd or Path.cwd()).absolute()
    environ = os.environ if environ is None else environ
    ini_path, toml_path = locate_config_files(config_args, cwd, environ)
    config = _read_config_files(ini_path, toml_path, section, cwd)
    script_location_value = _script_location_value(config)
    if ":" in str(script_location_value):
        # A package-style location is found on sys.path as Alembic extends it first.
        _prepend_sys_path(config.option("prepend_sys_path"), config.option("path_separator"),
                          cwd)
    script_location = _resource_path(str(script_location_value), cwd)
    here = (ini_path or toml_path or cwd).parent.absolute()
    if require_script_folder and not os.path.exists(script_location):
        raise _missing_script_folder(str(script_location_value), script_location, here,
                                     ini_path or toml_path, cwd)
    version_locations = (
        _version_locations(config.parser, section, config.alembic_toml, config.toml_here, cwd)
        or (script_location / "versions",))
    tool = _tool_settings(config.parser, config.toml_data, ini_path, toml_path)
    if tool.version_locations:  # the tool's own setting wins (relative to the config file)
        version_locations = tuple(_resource_path(item, here) for item in tool.version_locations)
    return ProjectConfig(
        cwd=cwd,
        ini_path=ini_path,
        toml_path=toml_path,
        section=section,
        here=here,
        script_location=script_location,
        version_locations=version_locations,
        recursive_version_locations=_boolean(config.option("recursive_version_locations")),
        sourceless=_boolean(config.option("sourceless")),
        x_args=tuple(x_args),
        tool=tool,
    )


class _ConfigFiles(NamedTuple):
    """The Alembic configuration as read from alembic.ini and pyproject.toml."""

    ini_path: Path | None
    toml_path: Path | None
    section: str
    parser: configparser.ConfigParser | None
    toml_data: dict[str, Any]
    alembic_toml: dict[str, Any]  # [tool.alembic]
    toml_here: Path  # what %(here)s means in pyproject.toml

    def option(self, name: str) -> Any:
        """An Alembic option: the ini file's, else pyproject.toml's (None when neither)."""
        if self.parser is not None and self.parser.has_option(self.section, name):
            return self.parser.get(self.section, name)
        return _interpolate_toml(self.alembic_toml.get(name), self.toml_here)


def _read_config_files(ini_path: Path | None, toml_path: Path | None, section: str,
                       cwd: Path) -> _ConfigFiles:
    """Both files read; ConfigError when neither configures Alembic."""
    parser = _read_ini(ini_path) if ini_path else None
    toml_data = _read_toml(toml_path) if toml_path else {}
    alembic_toml = _table(toml_data, "tool", "alembic")
    if parser is not None and not parser.has_section(section) and not alembic_toml:
        raise ConfigError(f"no [{section}] section in {ini_path}",
                          hint="pass the right section with -n/--name")
    if parser is None and not alembic_toml:
        raise ConfigError(
            f"no Alembic configuration found in {cwd}",
            hint="run from the folder that holds alembic.ini (or a pyproject.toml with "
                 "[tool.alembic]), or pass -c PATH",
        )
    toml_here = toml_path.parent.absolute() if toml_path else cwd
    return _ConfigFiles(ini_path, toml_path, section, parser, toml_data, alembic_toml,
                        toml_here)


def _script_location_value(config: _ConfigFiles) -> Any:
    value = config.option("script_location")
    beside_ini = config.ini_path.parent if config.ini_path is not None else None
    if not value and beside_ini and (beside_ini / "env.py").is_file():
        # Flask-Migrate keeps alembic.ini beside env.py and sets script_location in code.
        value = str(beside_ini)
    if not value:
        raise ConfigError(f"no 'script_location' key in {config.ini_path or config.toml_path}",
                          hint="Alembic needs script_location to find env.py and versions/")
    return value


def _missing_script_folder(value: str, resolved: Path, here: Path, config_file: Path | None,
                           cwd: Path) -> ConfigError:
    """Alembic stops on this ("Path doesn't exist", ``ScriptDirectory.__init__``): so does
    every command, rather than find no revision. Its version locations may be missing (Alembic
    skips them when reading and creates them when writing a revision): they are not checked."""
    # Shown without the `..` of `-c ../alembic.ini` (normpath: symbolic links kept as given).
    folder, config_dir = Path(os.path.normpath(resolved)), Path(os.path.normpath(here))
    config_name = os.path.normpath(config_file) if config_file else cwd
    message = (f"the script folder does not exist: {folder} (script_location = {value} in "
               f"{config_name})")
    if _is_package_resource(value) or os.path.isabs(value):
        return ConfigError(message, hint=f"fix script_location in {config_name}, or create "
                                         "the folder with `alembic init`")
    # Relative: Alembic resolves it from the current folder, not from the config file's.
    from_config = config_dir / value
    where = (f"run from {config_dir}, where it resolves to {from_config}"
             if config_dir != cwd and os.path.exists(from_config)
             else "run from the folder you run `alembic` from")
    return ConfigError(message, hint=(
        f"Alembic resolves a relative script_location from the current folder ({cwd}), not "
        f"from the config file's: {where}, or write `script_location = %(here)s/{value}` "
        "to make it relative to the config file"))


def _read_ini(path: Path) -> configparser.ConfigParser:

    # Alembic passes {"here": ...} as ConfigParser defaults, so %(here)s works everywhere.
    parser = configparser.ConfigParser({"here": path.parent.absolute().as_posix()})
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (configparser.Error, UnicodeDecodeError, OSError) as error:
        first = str(error).splitlines()[0]
        raise ConfigError(f"cannot read {path}: {first}") from error
    return parser


def _tomllib() -> Any:
    """The TOML parser: the standard library's from 3.11, ``tomli`` before."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    return tomllib


def _read_toml(path: Path) -> dict[str, Any]:
    tomllib = _tomllib()
    try:
        with open(path, "rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
            return data
    except (tomllib.TOMLDecodeError, OSError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from error


def _table(data: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    current: Any = data
    for key in keys:
        if not isinstance(current, Mapping):
            return {}
        current = current.get(key, {})
    return dict(current) if isinstance(current, Mapping) else {}


def _interpolate_toml(value: Any, here: Path) -> Any:
    if isinstance(value, str):
        return value.replace("%(here)s", here.as_posix())
    if isinstance(value, list):
        return [_interpolate_toml(item, here) for item in value]
    return value


def _prepend_sys_path(value: Any, separator_name: Any, cwd: Path) -> None:
    """``prepend_sys_path``, put in front of sys.path as ``ScriptDirectory.from_config``
    does before it resolves ``pkg:path`` (entries relative to the current folder)."""
    if not value:
        return
    if isinstance(value, list):
        items = [str(item) for item in value]
    elif separator_name in _SEPARATORS:
        items = [item.strip() for item in str(value).split(_SEPARATORS[separator_name])]
    else:
        items = re.split(r", *|(?: +)|:", str(value))
    entries = [os.path.join(cwd, item) for item in items if item]
    sys.path[:0] = [entry for entry in entries if entry not in sys.path]


def _resource_path(value: str, cwd: Path) -> Path:
    """``pkg.sub:folder`` -> the folder inside the installed package; else a path from cwd."""
    if _is_package_resource(value):
        package, _, resource = value.partition(":")
        try:
            import importlib.util

            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"script_location {value!r}: package {package!r} not found")
        return (Path(next(iter(spec.submodule_search_locations))) / resource).absolute()
    path = Path(value)
    return path if path.is_absolute() else (cwd / path).absolute()


def _is_package_resource(value: str) -> bool:
    """``pkg.sub:folder``, as Alembic tells it from a path (a Windows drive is a path)."""
    return ":" in value and not os.path.isabs(value) and not re.match(r"^[A-Za-z]:[\\/]", value)


def version_locations_from_text(text: str, *, toml: bool, section: str, here: Path,
                                cwd: Path) -> tuple[Path, ...]:
    """The version locations a config file with this text gives when it sits in ``here``.

    For another commit's copy of the project's config (the versions folder may have moved
    since); the same rules as ``load_project``. Raises ConfigError when the text is unreadable.
    """

    parser: configparser.ConfigParser | None = None
    alembic_toml: dict[str, Any] = {}
    try:
        if toml:
            tomllib = _tomllib()
            try:
                alembic_toml = _table(tomllib.loads(text), "tool", "alembic")
            except tomllib.TOMLDecodeError as error:
                raise ConfigError(f"cannot read the config text: {error}") from error
            script = _interpolate_toml(alembic_toml.get("script_location"), here)
        else:
            parser = configparser.ConfigParser({"here": here.as_posix()})
            parser.read_string(text)
            if not parser.has_section(section):
                return ()
            script = parser.get(section, "script_location", fallback=None)
        locations = _version_locations(parser, section, alembic_toml, here, cwd)
    except configparser.Error as error:
        raise ConfigError(f"cannot read the config text: {error}") from error
    if not locations and script:
        locations = (_resource_path(str(script), cwd) / "versions",)
    return locations


def _version_locations(parser: configparser.ConfigParser | None, section: str,
                       alembic_toml: Mapping[str, Any], toml_here: Path,
                       cwd: Path) -> tuple[Path, ...]:
    ini_value = parser.get(section, "version_locations", fallback=None) if parser else None
    raw: list[str] = []
    if ini_value:
        assert parser is not None
        raw = _split_ini_locations(ini_value, _ini_path_separator(parser, section))
    elif "version_locations" in alembic_toml:
        value = _interpolate_toml(alembic_toml["version_locations"], toml_here)
        raw = [str(item) for item in (value if isinstance(value, list) else [value])]
    return tuple(_resource_path(item, cwd) for item in raw)


def _ini_path_separator(parser: configparser.ConfigParser, section: str) -> str | None:
    """The ini's ``path_separator`` (or its older name), None when not set."""
    for name in ("path_separator", "version_path_separator"):
        if parser.has_option(section, name):
            return parser.get(section, name)
    return None


def _split_ini_locations(ini_value: str, separator_name: str | None) -> list[str]:
    if separator_name is None:
        return [item for item in re.split(r", *|(?: +)", ini_value) if item]
    if separator_name not in _SEPARATORS:
        raise ConfigError(
            f"{separator_name!r} is not a valid path_separator",
            hint="expected 'space', 'newline', 'os', ':' or ';'")
    return [item.strip() for item in ini_value.split(_SEPARATORS[separator_name])
            if item.strip()]


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() in ("1", "yes", "true", "on")


# Every setting: its kind and default. Kinds: "bool", "seconds" (a number >= 0), "size" (a
# whole number > 0), "text", "folders" (a list of globs), "url", "table" (an SQL name).
SETTINGS: dict[str, tuple[str, Any]] = {
    "search": ("folders", ()),
    "fetch": ("bool", False),
    "fetch_timeout": ("seconds", 30.0),
    "trust_database": ("bool", False),
    "notify_url": ("url", None),
    "lock_timeout": ("seconds", 120.0),
    "max_file_bytes": ("size", DEFAULT_MAX_FILE_BYTES),
    "base_branch": ("text", None),
    "allow_untrusted_source": ("bool", False),
    "record_table": ("table", "alembic_autocopy_scripts"),
    "record": ("bool", True),
    "git_refs": ("bool", True),
    # Version folders to use instead of Alembic's (as the config or env.py sets them).
    "version_locations": ("folders", ()),
}
_TRUE_WORDS = ("1", "yes", "true", "on")
_FALSE_WORDS = ("0", "no", "false", "off")
_KIND_WORDS = {
    "bool": "true or false",
    "seconds": "a number of seconds, 0 or more (e.g. 30)",
    "size": "a whole number of bytes, more than 0 (e.g. 1000000)",
    "text": "a non-empty text",
    "folders": "a list of folders or globs (e.g. [\"~/Proj-*\"])",
    "url": "an http(s) URL",
    "table": "a table name (letters, digits, _)",
}


def _setting_value(key: str, value: Any, where: str) -> Any:
    """``value`` of setting ``key`` as its kind says; ConfigError (exit 2) naming the key,
    the file and what is accepted."""
    kind, _default = SETTINGS[key]
    try:
        return _SETTING_READERS[kind](value)
    except _BadSetting:
        raise ConfigError(f"invalid value {value!r} for setting {key!r} in {where}",
                          hint=f"{key} must be {_KIND_WORDS[kind]}; every setting: "
                               "docs/configuration.md") from None


class _BadSetting(Exception):
    """A value that is not of its setting's kind (``_setting_value`` says which)."""


def _bool_setting(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if isinstance(value, str) and word in _TRUE_WORDS + _FALSE_WORDS:
        return word in _TRUE_WORDS
    raise _BadSetting


def _seconds_setting(value: Any) -> float:
    if isinstance(value, bool):
        raise _BadSetting
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _BadSetting from None
    if not number >= 0:  # nan fails too
        raise _BadSetting
    return number


def _size_setting(value: Any) -> int:
    if isinstance(value, bool):
        raise _BadSetting
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise _BadSetting from None
    if not number > 0:
        raise _BadSetting
    return number


def _folders_setting(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise _BadSetting
    return tuple(item.strip() for item in items if item.strip())


def _text_setting(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _BadSetting
    return value.strip()


def _url_setting(value: Any) -> str:
    text = _text_setting(value)
    if not re.match(r"^https?://", text):
        raise _BadSetting
    return text


def _table_setting(value: Any) -> str:
    text = _text_setting(value)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise _BadSetting
    return text


#: How each kind of setting (``SETTINGS``) is read from a config value.
_SETTING_READERS: dict[str, Callable[[Any], Any]] = {
    "bool": _bool_setting,
    "seconds": _seconds_setting,
    "size": _size_setting,
    "folders": _folders_setting,
    "text": _text_setting,
    "url": _url_setting,
    "table": _table_setting,
}


def _unknown_setting(key: str, where: str, section: str) -> ConfigError:

    close = difflib.get_close_matches(key, SETTINGS, n=1)
    guess = f"did you mean `{close[0]}`? " if close else ""
    return ConfigError(f"unknown setting {key!r} in [{section}] of {where}",
                       hint=f"{guess}valid settings: {', '.join(SETTINGS)} "
                            "(docs/configuration.md)")


def _tool_settings(parser: configparser.ConfigParser | None, toml_data: Mapping[str, Any],
                   ini_path: Path | None, toml_path: Path | None) -> ToolSettings:
    """The settings of both files (pyproject.toml wins a key set in both); an unknown key
    or a bad value is a ConfigError naming the key and the file."""
    values: dict[str, Any] = {}
    if parser is not None and parser.has_section(TOOL_SECTION):
        for key in parser.options(TOOL_SECTION):
            if key == "here" or key in parser.defaults():
                continue
            name = key.replace("-", "_")
            if name not in SETTINGS:
                raise _unknown_setting(key, str(ini_path), TOOL_SECTION)
            raw: Any = parser.get(TOOL_SECTION, key)
            if SETTINGS[name][0] == "folders":
                raw = [item for item in re.split(r"[\n,]+", raw) if item.strip()]
            values[name] = _setting_value(name, raw, str(ini_path))
    for key, value in _table(toml_data, "tool", TOOL_SECTION).items():
        name = key.replace("-", "_")
        if name not in SETTINGS:
            raise _unknown_setting(key, str(toml_path), f"tool.{TOOL_SECTION}")
        values[name] = _setting_value(name, value, str(toml_path))
    return ToolSettings(**values)
