"""The `avsync` entry point: subcommand dispatch, help, and light start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from avsync.cli import SUBCOMMAND_MODULES, build_parser, main


def test_full_parser_lists_every_subcommand() -> None:
    help_text = build_parser().format_help()
    for name in SUBCOMMAND_MODULES:
        assert name in help_text


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: avsync" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err
    assert err.startswith("avsync: error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["align", "--mode", "foo", "v.mp4", "m.wav"], ["align", "v.mp4"], ["align", "v.mp4", "m.wav", "--bogus"],
                                  ["eval", "--clips", "x"]])
def test_usage_errors_are_one_line_pointing_to_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("avsync: error: avsync") and "--help)" in err


def test_running_one_light_subcommand_does_not_import_lightning() -> None:
    code = (
        "import sys; from avsync.cli import main\n"
        "try:\n    main(['synth', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('pytorch_lightning' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_a_subcommand_that_fails_to_import_is_an_error_not_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real_import = importlib.import_module

    def broken(name: str, *args: object) -> object:
        if name == "avsync.commands.eval":
            raise ModuleNotFoundError("No module named 'avsync.commands.eval'", name=name)
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError):
        build_parser()
