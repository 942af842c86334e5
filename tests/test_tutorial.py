"""Every spec, command and Python snippet of docs/tutorial.md runs as the page says."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).parent.parent / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.M | re.S)


def blocks():
    return [(lang, info.strip(), body) for lang, info, body in BLOCK.findall(TUTORIAL.read_text())]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tutorial")
    for lang, name, body in blocks():
        if lang == "json":
            assert name, "every JSON block of the tutorial names its file"
            (path / name).write_text(body)
    return path


def commands():
    out = []
    for lang, _, body in blocks():
        if lang == "console":
            for line in body.splitlines():
                if line.startswith("$ "):
                    command, _, comment = line[2:].partition("#")
                    expected = int(m.group(1)) if (m := re.search(r"exit status (\d+)", comment)) else 0
                    out.append((command.strip(), expected))
    return out


def test_the_tutorial_has_specs_commands_and_code():
    kinds = {lang for lang, _, _ in blocks()}
    assert {"json", "console", "python"} <= kinds
    assert len(commands()) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("command, expected", commands(), ids=[c for c, _ in commands()])
def test_command(workdir, command, expected):
    argv = shlex.split(command)
    assert argv[0] == "arblocks"
    result = subprocess.run([sys.executable, "-m", "arblocks", *argv[1:]], cwd=workdir, capture_output=True, text=True)
    assert result.returncode == expected, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_python_snippets(workdir):
    for lang, _, body in blocks():
        if lang == "python":
            result = subprocess.run([sys.executable, "-c", body], cwd=workdir, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_the_quoted_error_is_the_real_one(workdir):
    result = subprocess.run([sys.executable, "-m", "arblocks", "build", "first_try.json"], cwd=workdir, capture_output=True, text=True)
    quoted = re.search(r"```\n(first_try\.json: .*?)```", TUTORIAL.read_text(), re.S).group(1)
    assert " ".join(quoted.split()) == " ".join(result.stderr.split())
