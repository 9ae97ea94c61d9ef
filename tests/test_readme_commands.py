"""Every ``python ...`` command the README (and docs/) shows is accepted, as written, by the program it names.

The Quick start commands run with small budgets in tests/test_readme.py, the set-up commands in CI,
and each benchmark and experiment has its own small-budget tests; this test covers what those cannot:
that no command in the README or docs/*.md (code blocks, tables and prose) has drifted from its program's
command line: the program exists and its argument parser accepts the arguments as written. Each
program runs in this process up to its ``parse_args`` and stops there, so nothing trains or writes.
"""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import sys

import pytest

from tests.helpers import ROOT

#: programs whose README commands are checked (the first words of a command after ``python``); not
#: ``-m pytest`` (its options are pytest's and its plugins', and the README's pytest lines are CI's)
PROGRAMS = ("train.py", "evaluate.py", "bench/", "-m ruagent.")


def readme_commands(document: str = "README.md") -> list[str]:
    """Every ``python ...`` command of a Markdown file: lines of its bash blocks (continued lines joined)
    and inline code spans, without trailing comments, set-up chains (``... && ...``, run by CI),
    placeholders (``<name>``) or usage synopses (``[--option]``)."""
    text = (ROOT / document).read_text(encoding="utf-8")
    blocks = [block.replace("\\\n", " ") for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL)]
    lines = [line for block in blocks for line in block.splitlines()]
    lines += re.findall(r"`(python [^`]+)`", text)
    commands = []
    for line in lines:
        command = re.split(r"\s+#", line)[0].strip()
        if (command.startswith("python ") and command[len("python "):].startswith(PROGRAMS)
                and not any(mark in command for mark in ("&&", "<", "[", "|"))):
            commands.append(command)
    return list(dict.fromkeys(commands))


class Parsed(Exception):
    """Raised by the patched ``parse_args`` once the program's parser accepted its arguments."""


def parse_as_written(command: str, monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """Run ``command``'s program in this process up to its argument parsing; the parsed namespace."""
    words = shlex.split(command)[1:]
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.chdir(ROOT)
    with pytest.raises(Parsed) as parsed:
        if words[0] == "-m":
            monkeypatch.setattr(sys, "argv", [words[1], *words[2:]])
            runpy.run_module(words[1], run_name="__main__", alter_sys=True)
        else:
            script = ROOT / words[0]
            assert script.is_file(), f"the README runs {words[0]}, which does not exist"
            monkeypatch.setattr(sys, "argv", [str(script), *words[1:]])
            monkeypatch.syspath_prepend(str(script.parent))  # as `python script` puts its folder first
            runpy.run_path(str(script), run_name="__main__")
    return parsed.value.args[0]


def test_the_readme_shows_commands_of_every_kind() -> None:
    commands = readme_commands()
    for program in ("train.py", "bench/", "-m ruagent."):  # evaluate.py's only takes a placeholder run folder
        assert any(c.split(" ", 1)[1].startswith(program) for c in commands), program
    assert len(commands) >= 30


DOCUMENTS = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]


# runpy warns when it re-runs a module the package imported already (a fresh interpreter would not)
@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")
@pytest.mark.parametrize(("document", "command"),
                         [(document, command) for document in DOCUMENTS for command in readme_commands(document)])
def test_documented_command_is_accepted_as_written(document: str, command: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        parse_as_written(command, monkeypatch)
    except SystemExit as exit_:  # argparse's error (status 2): unknown flag, bad choice or value; --help: 0
        if exit_.code != 0:
            pytest.fail(f"{document}'s `{command}` is refused by its program (exit status {exit_.code})")


@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")
def test_a_drifted_command_is_caught(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The check can fail: a flag the program does not have is refused."""
    with pytest.raises(SystemExit):
        parse_as_written("python -m ruagent.experiments.render --no-such-flag", monkeypatch)
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    assert parse_as_written("python -m ruagent.experiments.render --check", monkeypatch).check is True


def test_commands_in_prose_and_tables_are_found() -> None:
    commands = readme_commands()
    assert "python bench/wrapper.py --repeats 9" in commands  # a Benchmarks table cell
    assert "python -m ruagent.experiments.render" in commands  # a bash block with a trailing comment
    assert not [c for c in commands if "&&" in c or "<" in c or " #" in c or "pytest" in c or "[" in c]
    continued = readme_commands("docs/results.md")  # a command over several lines, joined
    assert any(c.startswith("python -m ruagent.experiments.headline --testbeds lava-procedural") and "\\" not in c
               for c in continued)
