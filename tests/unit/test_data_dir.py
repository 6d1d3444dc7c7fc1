"""The data folder comes from an argument or $RT_DATA_DIR; the library never searches for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rt_middleware.datasets import DATA_DIR_ENV, DatasetError, checkout_data_dir, data_dir


def test_argument_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    (tmp_path / "arg").mkdir()
    assert data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_unset_means_an_error_that_says_how_to_set_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No walking up from the working directory, even when a shared/data folder is right there."""
    (tmp_path / "shared" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DatasetError, match=r"set RT_DATA_DIR .*export RT_DATA_DIR="):
        data_dir()


def test_a_missing_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(DatasetError, match="nope does not exist"):
        data_dir()


def test_the_suite_and_the_cli_default_to_the_checkout_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/conftest.py set RT_DATA_DIR (unless given); `rt` does the same for its commands."""
    from rt_middleware.cli.app import use_checkout_data

    checkout = checkout_data_dir()
    if checkout is None:
        pytest.skip("no shared/data beside this checkout")
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    use_checkout_data()
    assert data_dir() == checkout
