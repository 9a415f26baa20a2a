"""``$tokens`` in job fields: run tokens and parameters replaced, everything else left alone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.model.tokens import substitute, substitute_shell

TOKENS = {
    "runId": "run-42",
    "dagName": "nightly",
    "jobId": "load",
    "attempt": 2,
    "region": "02",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$runId", "run-42"),
        ("--run=$runId", "--run=run-42"),
        ("$dagName/$jobId#$attempt", "nightly/load#2"),  # non-string values are str()-ed
        ("region $region", "region 02"),  # a run parameter by its name
        ("$runId$runId", "run-42run-42"),
        ("${HOME}", "${HOME}"),  # environment interpolation is not a run token
        ("${runId}", "${runId}"),
        ("$unknown and $runId", "$unknown and run-42"),  # unknown tokens stay
        ("$runIdx", "$runIdx"),  # the longest name is the token
        ("$$", "$"),
        ("$$runId", "$runId"),  # an escaped dollar is not a token start
        ("cost: $$5", "cost: $5"),
        ("$$$runId", "$run-42"),
        ("$", "$"),
        ("5$", "5$"),
        ("$1", "$1"),  # a token name starts with a letter or _
        ("no tokens", "no tokens"),
        ("", ""),
    ],
)
def test_substitute_strings(text: str, expected: str) -> None:
    assert substitute(text, TOKENS) == expected


def test_substitute_nested_lists_and_dicts() -> None:
    value = {
        "command": ["python", "report.py", "--run", "$runId", "--region=$region"],
        "env": {"RUN": "$runId", "HOME": "${HOME}", "PRICE": "$$3"},
        "deep": [{"x": ["$jobId", {"y": "$attempt"}]}],
        "count": 3,
        "flag": True,
        "none": None,
    }
    assert substitute(value, TOKENS) == {
        "command": ["python", "report.py", "--run", "run-42", "--region=02"],
        "env": {"RUN": "run-42", "HOME": "${HOME}", "PRICE": "$3"},
        "deep": [{"x": ["load", {"y": "2"}]}],
        "count": 3,
        "flag": True,
        "none": None,
    }


def test_substitute_leaves_keys_and_input_untouched() -> None:
    value = {"$runId": ["$runId"]}
    assert substitute(value, TOKENS) == {"$runId": ["run-42"]}
    assert value == {"$runId": ["$runId"]}  # a copy, not an in-place edit


def test_substitute_with_no_tokens_only_unescapes() -> None:
    assert substitute("$runId costs $$1", {}) == "$runId costs $1"


def test_a_job_works_out_whether_it_has_tokens_once_and_again_when_validated() -> None:
    from orchestrator.model.dag import DAG, Job

    with DAG("d") as dag:
        job = Job("a", "fake", message="plain")
    assert not job.has_tokens
    job.params = {"message": "day $day"}  # new params: worked out again
    assert job.has_tokens
    job.params["message"] = "plain again"  # changed in place: seen by the next validate
    dag.validate()
    assert not job.has_tokens


HOSTILE = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "a; touch PWNED",
    'it\'s "quoted"',
    "line one\nline two; touch PWNED",
    "$HOME and $$ and ${PATH}",
    "back\\slash \\",
    "'; touch PWNED; echo '",
    '"; touch PWNED; echo "',
    "  spaced  *  ",
]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    "script",
    [
        "printf %s $v",  # bare: one word, however many spaces or globs it has
        'printf %s "$v"',  # inside double quotes
        "printf %s '$v'",  # inside single quotes
        "printf %s \"[$v]\"'[$v]'[$v]",  # all three in one word
    ],
)
def test_shell_substitution_keeps_a_value_data(tmp_path: Path, value: str, script: str) -> None:
    text, env = substitute_shell(script, {"v": value})
    assert value not in text  # the script holds a reference, never the value
    done = subprocess.run(
        ["/bin/sh", "-c", text],
        env={**os.environ, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    expected = script.removeprefix("printf %s ").replace('"', "").replace("'", "")
    assert done.stdout == expected.replace("$v", value)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("echo $$region", "echo $region"),  # $$ is a literal $: the shell's own variable
        ("echo \\$region", "echo \\$region"),  # escaped for the shell: the shell's
        ("echo $unknown", "echo $unknown"),
        ("echo ${region}", "echo ${region}"),
        ("no tokens", "no tokens"),
    ],
)
def test_shell_substitution_leaves_the_shell_its_own_dollars(script: str, expected: str) -> None:
    assert substitute_shell(script, {"region": "02"}) == (expected, {})


def test_shell_substitution_names_each_value_once() -> None:
    text, env = substitute_shell('echo $a "$a" $runId', {"a": 1, "runId": "r"})
    assert (
        text
        == 'echo "${ORCHESTRATOR_TOKEN_a}" "${ORCHESTRATOR_TOKEN_a}" "${ORCHESTRATOR_TOKEN_runId}"'
    )
    assert env == {"ORCHESTRATOR_TOKEN_a": "1", "ORCHESTRATOR_TOKEN_runId": "r"}
