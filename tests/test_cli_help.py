"""The command line's help: every command says what it does in a sentence, every option
has help, no markup leaks, and each stage says what it reads and writes (as dvc.yaml
declares)."""

from __future__ import annotations

import argparse

import pytest
import yaml

from knnlab import cli

from .conftest import REPO_ROOT

DVC_STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_command_and_option_has_help_without_markup(command, capsys):
    text = _help([command], capsys)
    assert text.startswith(f"usage: knnlab {command}")
    parser = _subparsers()[command]
    assert parser.description, f"{command} has no description"
    for action in parser._actions:
        if action.dest != "help":
            assert action.help, f"{command} {action.option_strings or action.dest}: no help"
    for markup in ("``", ":func:", ":class:", ":mod:", "<stdin>"):
        assert markup not in text, f"{command} --help shows {markup!r}"


def test_top_level_help_lists_every_command_on_whole_lines(capsys):
    text = _help([], capsys)
    for command in _subparsers():
        assert f"    {command} " in text, command
    assert "``" not in text and ":func:" not in text


@pytest.mark.parametrize("stage", sorted(cli.STAGES))
def test_a_stage_help_says_what_it_reads_and_writes(stage, capsys):
    text = _help([stage], capsys)
    assert "\nreads:  " in text and "\nwrites: " in text, text
    assert "(default: params.yaml)" in text
    # Every file or folder dvc.yaml declares as the stage's output is named in its help.
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in DVC_STAGES[stage]["outs"]]
    metrics = [next(iter(m)) for m in DVC_STAGES[stage].get("metrics", [])]
    flat = " ".join(text.split())
    for path in outs + metrics:
        if path.startswith("tracking/"):
            continue  # the MLflow run record, an implementation detail
        name = path.rstrip("/").rsplit("/", 1)[-1]
        assert name in flat, f"{stage} --help does not name {path}"


def test_top_must_be_validated_before_anything_is_read(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["predict", "--top", "0", "missing.png"])
    assert done.value.code == 2
    assert "--top: expected a whole number >= 1, got 0" in capsys.readouterr().err
