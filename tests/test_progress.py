"""Progress bars appear on a terminal only; logs and CI get no carriage-return redraws."""

import io

from decode.progress import progress_factory


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_when_stderr_is_not_a_terminal():
    assert progress_factory(stream=io.StringIO()) is None


def test_no_bar_when_disabled_even_on_a_terminal():
    assert progress_factory(False, stream=_Terminal()) is None


def test_a_bar_on_a_terminal_writes_there():
    term = _Terminal()
    factory = progress_factory(stream=term)
    assert factory is not None
    bar = factory(total=3, desc="epoch 1/1", unit="batch")
    bar.update(3)
    bar.close()
    assert "epoch 1/1" in term.getvalue()
