"""Every option of every verb says what it does and shows its default; a mistyped option shows its verb's usage."""

from __future__ import annotations

import argparse

from helpers import run_cli

from streamdetect.cli import VERBS
from streamdetect.cli.parser import build_parser


def _verbs() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return parser.verbs


def test_every_verb_has_a_parser_and_every_option_help_and_default():
    verbs = _verbs()
    assert set(verbs) == set(VERBS)
    problems = []
    for name, parser in verbs.items():
        for action in parser._actions:  # argparse keeps no public list of a parser's options
            if isinstance(action, argparse._HelpAction):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                problems.append(f"{label}: no help")
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                shown = parser._get_formatter()._get_help_string(action) % {"default": action.default}
                if "default" not in shown:
                    problems.append(f"{label}: default {action.default!r} not shown")
    assert not problems, "\n".join(problems)


def test_help_shows_the_defaults_users_asked_about():
    help_of = {name: parser.format_help() for name, parser in _verbs().items()}
    assert "events/events.db" in help_of["events"] and "(default: 3)" in help_of["tag"]
    assert "(default: 1.0)" in " ".join(help_of["evaluate"].split())
    assert "(default: 3.0)" in " ".join(help_of["index"].split())
    assert "the config's `model`" in " ".join(help_of["prompts"].split())


def test_a_mistyped_run_option_prints_runs_usage():
    result = run_cli("run", "--config", "x.yaml", "--file", "x.wav")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: streamdetect run ") and "unrecognized arguments: --file x.wav" in result.stderr
    assert "Traceback" not in result.stderr
