"""tests/mutants.py puts each deliberate bug in by replacing an exact snippet; a refactor that moves the snippet would
silently retire the check (three did once). Each snippet must still occur exactly once in its file."""
import pytest

from mutants import MUTANTS, ROOT


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_snippet_still_in_the_code(name):
    path, old, new, _tests = MUTANTS[name]
    assert (ROOT / path).read_text().count(old) == 1, f"{name}: update its snippet in tests/mutants.py"
    assert old != new
