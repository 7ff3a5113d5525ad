"""An internal error's traceback goes to a private file of the user's, or to stderr: never to a
shared folder, never through a symlink, and never as a second traceback."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from deepsets.pipelines.cli import main
from deepsets.pipelines.commands import data as data_commands
from deepsets.pipelines.error_log import log_folder, private_folder


def broken(args):
    raise KeyError("a bug somewhere deep")


@pytest.fixture
def failing_fit(monkeypatch, tmp_path):
    """``deepsets fit`` fails with a bug; the user's state folder and the system temp folder lie in ``tmp_path``."""
    monkeypatch.setattr(data_commands, "_run_fit", broken)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    return ["fit", "--schema", "s.toml", "--input", "x", "--out", str(tmp_path / "spec.json")]


def test_the_log_is_a_private_file_in_the_users_state_folder(failing_fit, tmp_path, capsys):
    assert main(failing_fit) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: KeyError: 'a bug somewhere deep' (traceback in ") and err.count("\n") == 1
    log = err.rsplit("(traceback in ", 1)[1].strip().rstrip(")")
    folder = tmp_path / "state" / "deepsets" / "logs"
    assert os.path.dirname(log) == str(folder) and os.path.basename(log).startswith("fit-")
    with open(log, encoding="utf-8") as handle:
        text = handle.read()
    assert text.startswith("deepsets ") and "Traceback (most recent call last)" in text and "raise KeyError" in text
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700 and stat.S_IMODE(os.stat(log).st_mode) == 0o600
    assert main(failing_fit) == 1  # a second failure in the same second gets a file of its own
    second = capsys.readouterr().err.rsplit("(traceback in ", 1)[1].strip().rstrip(")")
    assert second != log and len(os.listdir(folder)) == 2


def test_a_symlink_planted_in_the_shared_temp_folder_is_never_written_through(failing_fit, tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "shared-tmp" / "deepsets-logs").symlink_to(victim)  # where the log used to go, owned by anyone
    assert main(failing_fit) == 1
    assert "(traceback in " in capsys.readouterr().err
    assert os.listdir(victim) == []
    assert len(os.listdir(tmp_path / "state" / "deepsets" / "logs")) == 1


def test_a_symlinked_log_folder_is_refused_and_the_traceback_goes_to_stderr(failing_fit, tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "state" / "deepsets").mkdir(parents=True)
    (tmp_path / "state" / "deepsets" / "logs").symlink_to(victim)
    assert main(failing_fit) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: KeyError: 'a bug somewhere deep' (no log file could be written in ")
    assert "is not a folder (a symlink or a file is there); the traceback follows)\n" in err
    assert err.count("Traceback (most recent call last)") == 1 and "raise KeyError" in err
    assert os.listdir(victim) == []


def test_an_unwritable_log_folder_gives_one_message_and_the_traceback_once(failing_fit, tmp_path, capsys, monkeypatch):
    (tmp_path / "state").write_text(
        "a file where the state folder should be"
    )  # cannot hold deepsets/logs, even for root
    (tmp_path / "shared-tmp").rmdir()
    (tmp_path / "shared-tmp").write_text("nor can the temp folder")
    assert main(failing_fit) == 1
    err = capsys.readouterr().err
    first, rest = err.split("\n", 1)
    assert first.startswith(
        f"internal error: KeyError: 'a bug somewhere deep' (no log file could be written in {tmp_path / 'state' / 'deepsets' / 'logs'}: "
    )
    assert first.endswith("; the traceback follows)")
    assert rest.startswith("Traceback (most recent call last)") and rest.count("Traceback") == 1
    assert rest.rstrip().endswith("KeyError: 'a bug somewhere deep'")


def test_the_folder_is_the_xdg_state_home_or_the_home_default(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert log_folder() == tmp_path / "deepsets" / "logs"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # not absolute: ignored, as the XDG rules say
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert log_folder() == tmp_path / "home" / ".local" / "state" / "deepsets" / "logs"


def test_a_loose_folder_of_the_users_is_made_private(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    assert private_folder(folder) == folder
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
