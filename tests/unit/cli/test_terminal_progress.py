"""The terminal progress bar: tqdm on stderr, with transformers' and huggingface_hub's own bars
off while it is shown and back as they were after."""
import io

import pytest
from huggingface_hub import utils as hub
from transformers.utils import logging as tf_logging

from workbench.cli.terminal import TerminalProgress


@pytest.fixture
def other_bars_on():
    tf_logging.enable_progress_bar()
    yield
    tf_logging.enable_progress_bar()


def _last_line(text: str) -> str:
    return text.rstrip("\n").split("\r")[-1]


def test_a_fake_install_draws_one_bar_ending_at_its_last_message(other_bars_on):
    out = io.StringIO()
    bar = TerminalProgress(out)
    seen = []
    for i, message in enumerate(["downloading", "downloading", "converting", "writing the manifest"]):
        bar(i / 4, message)
        seen.append((hub.are_progress_bars_disabled(), tf_logging.is_progress_bar_enabled()))
    bar(1.0, "installed tiny")
    text = out.getvalue()
    assert seen == [(True, False)] * 4  # theirs off while ours is shown
    assert text.endswith("\n") and text.count("\n") == 1
    assert _last_line(text).startswith("installed tiny: 100%|")
    assert not hub.are_progress_bars_disabled() and tf_logging.is_progress_bar_enabled()  # back on


def test_a_bar_that_goes_back_or_stops_short_is_closed_and_restores(other_bars_on):
    out = io.StringIO()
    with TerminalProgress(out) as bar:
        bar(0.6, "phase one")
        bar(0.2, "phase two")
        assert hub.are_progress_bars_disabled()
    assert _last_line(out.getvalue()).startswith("phase two:  20%|")
    assert out.getvalue().endswith("\n")
    assert tf_logging.is_progress_bar_enabled() and not hub.are_progress_bars_disabled()
    bar(0.5, "a new bar")  # after a close, a call starts a new bar on a new line
    bar(1.0, "done")
    assert out.getvalue().count("\n") == 2 and _last_line(out.getvalue()).startswith("done: 100%|")


def test_bars_the_user_turned_off_stay_off(other_bars_on):
    tf_logging.disable_progress_bar()
    bar = TerminalProgress(io.StringIO())
    bar(0.5, "half")
    bar(1.0, "done")
    assert hub.are_progress_bars_disabled() and not tf_logging.is_progress_bar_enabled()


def test_the_bar_writes_to_stderr_by_default(capsys, other_bars_on):
    bar = TerminalProgress()
    bar(0.0, "start")
    bar(1.0, "finished")
    captured = capsys.readouterr()
    assert captured.out == "" and "finished: 100%|" in captured.err


def test_each_librarys_own_setting_comes_back_as_it_was(other_bars_on):
    tf_logging.disable_progress_bar()  # what workbench.runtime.loading does on import
    hub.enable_progress_bars()  # while the hub's stay on
    bar = TerminalProgress(io.StringIO())
    bar(0.5, "half")
    bar(1.0, "done")
    assert not tf_logging.is_progress_bar_enabled()  # not turned on because the hub's were
    assert not hub.are_progress_bars_disabled()
