"""The connections file: TOML tables, ${ENV} interpolation, every problem at once, no secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.connections import Connection, connection_secrets, load_connections
from orchestrator.errors import ConfigError

SECRET = "s3cr3t-Token-value"


def write(tmp_path: Path, text: str, name: str = "connections.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_full_connection(tmp_path: Path) -> None:
    ca = write(tmp_path, "not really a cert", "ca.pem")
    path = write(
        tmp_path,
        f"""
[trifacta]
type = "trifacta"
base_url = "https://${{HOST}}:8443/trifacta/"
token = "${{TRIFACTA_TOKEN}}"
verify_tls = true
ca_file = "{ca.name}"
timeout = "1m"
connect_timeout = 5
rate = 2.5
burst = 4
concurrency = 3
max_connections = 8
key_field = "ws-${{REGION}} costs $${{PRICE}} and $5"

[celonis]
type = "celonis"
base_url = "http://celonis.local"

[celonis.credentials]
app_key = "${{CELONIS_KEY}}"
""",
    )
    env = {"HOST": "wr.example", "TRIFACTA_TOKEN": SECRET, "REGION": "eu", "CELONIS_KEY": "ck-1"}
    conns = load_connections(path, environ=env)

    assert sorted(conns) == ["celonis", "trifacta"]
    t = conns["trifacta"]
    assert t == Connection(
        name="trifacta",
        type="trifacta",
        base_url="https://wr.example:8443/trifacta",
        credentials={"token": SECRET},
        verify_tls=True,
        ca_file=str(ca),
        timeout=60.0,
        connect_timeout=5.0,
        rate=2.5,
        burst=4,
        concurrency=3,
        max_connections=8,
        options={"key_field": "ws-eu costs ${PRICE} and $5"},
    )
    c = conns["celonis"]
    assert c.credentials == {"app_key": "ck-1"}
    assert (c.verify_tls, c.timeout, c.rate, c.burst, c.max_connections) == (
        True,
        30.0,
        None,
        1,
        32,
    )
    assert connection_secrets(conns) == {SECRET, "ck-1"}
    assert connection_secrets(conns.values()) == {SECRET, "ck-1"}


def test_repr_hides_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[a]\ntype = "http"\nbase_url = "http://h"\npassword = "${P}"\nusername = "u"\n',
    )
    conn = load_connections(path, environ={"P": SECRET})["a"]
    assert SECRET not in repr(conn)
    assert SECRET not in str(conn)
    assert "password=***" in repr(conn)


def test_strings_coerced_from_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[a]
type = "http"
base_url = "http://h"
verify_tls = "${VERIFY}"
rate = "${RATE}"
burst = "${BURST}"
""",
    )
    conn = load_connections(path, environ={"VERIFY": "false", "RATE": "0.5", "BURST": "3"})["a"]
    assert (conn.verify_tls, conn.rate, conn.burst) == (False, 0.5, 3)


@pytest.mark.parametrize(
    ("env", "base_url", "rate"),
    [
        ({}, "http://127.0.0.1:8765/generic", 5.0),
        ({"SIMULATOR_URL": "", "RATE": ""}, "http://127.0.0.1:8765/generic", 5.0),
        (
            {"SIMULATOR_URL": "https://sim.example", "RATE": "0.5"},
            "https://sim.example/generic",
            0.5,
        ),
    ],
)
def test_a_default_is_used_when_the_variable_is_unset_or_empty(
    tmp_path: Path, env: dict[str, str], base_url: str, rate: float
) -> None:
    path = write(
        tmp_path,
        '[a]\ntype = "http"\nbase_url = "${SIMULATOR_URL:-http://127.0.0.1:8765}/generic"\n'
        'rate = "${RATE:-5}"\ntoken = "${TOKEN:-}t"\n',
    )
    conn = load_connections(path, environ=env)["a"]
    assert (conn.base_url, conn.rate, conn.credentials) == (base_url, rate, {"token": "t"})


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("${NOPE}", "environment variable NOPE is not set"),
        ("${NOPE-x}", "'${NOPE-x}' is not a valid environment variable name"),
        ("${:-x}", "'${:-x}' is not a valid environment variable name"),
        ("${NOPE:-x", "unclosed '${'"),
    ],
)
def test_a_reference_without_a_usable_default_is_a_problem(
    tmp_path: Path, value: str, problem: str
) -> None:
    path = write(tmp_path, f'[a]\ntype = "http"\nbase_url = "http://h"\ntoken = "{value}"\n')
    with pytest.raises(ConfigError, match=re.escape(f"field 'token': {problem}")):
        load_connections(path, environ={})


def test_missing_variable_names_file_connection_field(tmp_path: Path) -> None:
    path = write(tmp_path, '[ocapi]\ntype = "ocapi"\nbase_url = "http://h"\ntoken = "${NOPE}"\n')
    with pytest.raises(ConfigError) as info:
        load_connections(path, environ={})
    message = str(info.value)
    assert str(path) in message
    assert "'ocapi'" in message
    assert "'token'" in message
    assert "NOPE is not set" in message


def test_every_problem_reported_at_once_without_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
top = 1

[a]
base_url = "ftp://h"
token = "${TOKEN}"
timeout = "soon"

[b]
type = "http"
base_url = "https://user:${TOKEN}@h/"
rate = -1
burst = 0
verify_tls = "maybe"
client_secret = 12.5

[c]
type = "http"
base_url = "http://h?key=${TOKEN}"
token = "x"
credentials = { token = "y" }
options = "${MISSING} ${bad-name} ${UNCLOSED"

[d]
type = "x"
base_url = "http://h"
ca_file = "no-such.pem"
""",
    )
    with pytest.raises(ConfigError) as info:
        load_connections(path, environ={"TOKEN": SECRET})
    message = str(info.value)
    assert SECRET not in message
    expected = [
        ("'a'", "'type'", "required"),
        ("'a'", "'base_url'", "http or https"),
        ("'a'", "'timeout'", "duration"),
        ("'b'", "'base_url'", "credentials"),
        ("'b'", "'rate'", "positive"),
        ("'b'", "'burst'", "at least 1"),
        ("'b'", "'verify_tls'", "true or false"),
        ("'b'", "'client_secret'", "must be a string"),
        ("'c'", "'base_url'", "query string"),
        ("'c'", "'token'", "keep one"),
        ("'c'", "'options'", "MISSING is not set"),
        ("'c'", "'options'", "not a valid environment variable name"),
        ("'c'", "'options'", "unclosed"),
        ("'c'", "'options'", "unknown key for a connection of type 'http'"),
        ("'d'", "'type'", "unknown connection type 'x' (known: alation, celonis, "),
        ("'d'", "'ca_file'", "no such file"),
        ("'top'", "", "must be a table"),
    ]
    lines = message.splitlines()
    assert lines[0] == f"connections file {path}: {len(expected)} problems:"
    for conn, key, words in expected:
        assert any(
            line.startswith(f"{path}: connection {conn}") and key in line and words in line
            for line in lines[1:]
        ), (conn, key, words, message)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[a\ntype = 1", "not valid TOML"),
        (b"\xff\xfe[a]", "not valid TOML"),
    ],
)
def test_bad_file(tmp_path: Path, text: str | bytes, words: str) -> None:
    path = tmp_path / "c.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ConfigError, match=words) as info:
        load_connections(path, environ={})
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_connections(path, environ={})
    assert str(path) in str(info.value)


def test_path_resolution(tmp_path: Path) -> None:
    path = write(tmp_path, '[a]\ntype = "http"\nbase_url = "http://h"\n')
    assert load_connections(environ={}) == {}
    assert load_connections(environ={"ORCHESTRATOR_CONNECTIONS": ""}) == {}
    assert list(load_connections(environ={"ORCHESTRATOR_CONNECTIONS": str(path)})) == ["a"]
    other = write(tmp_path, '[b]\ntype = "http"\nbase_url = "http://h"\n', "other.toml")
    explicit = load_connections(other, environ={"ORCHESTRATOR_CONNECTIONS": str(path)})
    assert list(explicit) == ["b"]


def test_reads_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[a]\ntype = "http"\nbase_url = "http://h"\ntoken = "${T_ENV}"\n')
    monkeypatch.setenv("T_ENV", SECRET)
    monkeypatch.setenv("ORCHESTRATOR_CONNECTIONS", str(path))
    assert load_connections()["a"].credentials == {"token": SECRET}


def test_verify_tls_false_with_ca_file_is_a_problem(tmp_path: Path) -> None:
    write(tmp_path, "x", "ca.pem")
    path = write(
        tmp_path,
        '[a]\ntype = "http"\nbase_url = "https://h"\nverify_tls = false\nca_file = "ca.pem"\n',
    )
    with pytest.raises(ConfigError, match="verify_tls is false"):
        load_connections(path, environ={})


def test_empty_credential_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, '[a]\ntype = "http"\nbase_url = "http://h"\ntoken = "${T}"\n')
    with pytest.raises(ConfigError, match="'token': is empty"):
        load_connections(path, environ={"T": ""})


def _problems_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_connections(path, environ=environ or {})
    first, *lines = str(info.value).splitlines()
    assert first.startswith(f"connections file {path}: ")
    prefix = f"{path}: connection "
    assert all(line.startswith(prefix) for line in lines), lines
    return [line.removeprefix(prefix) for line in lines]


def test_wrongly_typed_values_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    problems = _problems_of(
        tmp_path,
        f"""
[x]
type = "trifacta"
base_url = "http://h/"
rate = "fast"
timeout = -1
verify_tls = "no"
burst = "3"
tokn = "{SECRET}"
""",
    )
    assert problems == [
        "'x': field 'verify_tls': must be true or false, not a string "
        "(write verify_tls = no without quotes)",
        "'x': field 'timeout': must be a positive number of seconds or a duration such as '30s'",
        "'x': field 'rate': must be a positive number, not a string (write rate = fast without "
        "quotes)",
        "'x': field 'burst': must be a whole number of at least 1, not a string "
        "(write burst = 3 without quotes)",
        "'x': field 'tokn': unknown key for a connection of type 'trifacta' "
        "(did you mean 'token'?)",
    ]
    assert not any(SECRET in p for p in problems)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('type = "ocapi"\ntoken_url = 5', "field 'token_url': must be a string, not a number"),
        ('type = "ocapi"\nfind_skew = "soon"', "field 'find_skew': must be a positive number"),
        ('type = "granta"\nmax_upload_bytes = "big"', "field 'max_upload_bytes': must be a whole"),
        ('type = "celonis"\nappear_grace = -1', "field 'appear_grace': must be a positive number"),
        ('type = "http"\nheaders = "X-A: 1"', "field 'headers': must be a table of header names"),
        ('type = "http"\nkey_field = "id"', "field 'key_field': unknown key for a connection of"),
        ('type = "htp"', "field 'type': unknown connection type 'htp' (known: alation, celonis,"),
    ],
)
def test_type_specific_options_are_checked(tmp_path: Path, table: str, problem: str) -> None:
    problems = _problems_of(tmp_path, f'[c]\nbase_url = "http://h"\n{table}\n')
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"'c': {problem}"), problems


def test_type_specific_options_are_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[o]
type = "ocapi"
base_url = "http://h"
token_url = "/token"
find_skew = "1m"

[c]
type = "celonis"
base_url = "http://h"
appear_grace = 0

[h]
type = "http"
base_url = "http://h"
headers = { X-Team = "data" }
""",
    )
    conns = load_connections(path, environ={})
    assert conns["o"].options == {"token_url": "/token", "find_skew": 60.0}
    assert conns["c"].options == {"appear_grace": 0.0}
    assert conns["h"].options == {"headers": {"X-Team": "data"}}


@pytest.mark.parametrize("name", ["a\x1b[31m", "b\u202e", "c\x00"])
def test_connection_names_with_non_printable_characters_are_refused(
    tmp_path: Path, name: str
) -> None:
    toml_name = name.encode("unicode_escape").decode().replace("\\x", "\\u00")
    problems = _problems_of(tmp_path, f'["{toml_name}"]\ntype = "http"\nbase_url = "http://h"\n')
    assert problems == [
        f"{name!r}: the connection name {name!r} has the non-printable character "
        f"U+{ord(name[1]):04X}; use printable characters only"
    ]
    assert all(p.isprintable() for p in problems)
