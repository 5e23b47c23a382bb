"""Corpus loading: builtin Shakespeare and bad user input."""

import pytest

from corpus_weights.corpus.text import (
    CorpusError,
    clean_play_markdown,
    load_builtin_shakespeare,
    prepare_corpus,
    read_corpus_files,
)


def test_builtin_shakespeare_is_complete_and_clean():
    text, records = load_builtin_shakespeare()
    assert len(records) == 38
    assert sum(r["n_words"] for r in records) > 800_000
    assert len(text.split()) > 800_000
    assert "**" not in text and "#" not in text and "_" not in text
    names = [r["name"] for r in records]
    assert names == sorted(names) and "tragedies/hamlet.md" in names
    assert "To be, or not to be" in text


def test_clean_play_markdown_planted():
    md = "# Title\n\n## ACT I\n\n_Enter A, and B_\n\n**A**  \nHello there,  \nfriend \\- yes.\n\n\n*Exit.*\n__\\[Aside]_  \n"
    assert clean_play_markdown(md) == "Enter A, and B\n\nHello there,\nfriend - yes.\n\nExit.\n[Aside]\n"


def test_read_files_sorted_and_manifest(tmp_path):
    (tmp_path / "b.txt").write_text("two words\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("one\n", encoding="utf-8")
    text, records = read_corpus_files(["*.txt"], base_dir=str(tmp_path))
    assert text == "one\n\ntwo words\n"
    assert [r["name"] for r in records] == ["a.txt", "b.txt"]
    assert records[1]["n_words"] == 2 and records[1]["n_chars"] == 10
    text2, man = prepare_corpus(["*.txt"], base_dir=str(tmp_path))
    assert text2 == text and man["source"] == "files" and man["n_words"] == 3 and man["n_lines"] == 3
    assert len(man["sha256"]) == 64 and len(man["files"]) == 2


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(CorpusError, match=r"'nothing/\*\.txt' matched no files"):
        read_corpus_files(["nothing/*.txt"], base_dir=str(tmp_path))


@pytest.mark.parametrize("content", [b"", b"  \n\t\n"])
def test_empty_file(tmp_path, content):
    (tmp_path / "empty.txt").write_bytes(content)
    with pytest.raises(CorpusError, match=r"empty\.txt.*empty or contains only whitespace"):
        prepare_corpus(["empty.txt"], base_dir=str(tmp_path))


def test_non_utf8(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf".encode() + b"\xe9 ok")
    with pytest.raises(CorpusError, match=r"latin1\.txt.*not valid UTF-8.*byte offset 3"):
        read_corpus_files(["latin1.txt"], base_dir=str(tmp_path))


def test_word_and_line_counts_in_blocks_equal_split():
    """Blocks cut after a line feed give exactly str.split / str.splitlines, Unicode spaces and CR LF included."""
    from corpus_weights.corpus.text import count_words_and_lines

    text = "".join(f"w{i}\u00a0x{i}\u3000y\r\nz {i}\tq\x0bend\n" if i % 3 else f"solo{i}\u2028two\n" for i in range(500))
    for block in (1, 7, 64, 10_000):
        assert count_words_and_lines(text, block) == (len(text.split()), len(text.splitlines()))
    assert count_words_and_lines("no newline at all", 3) == (4, 1)
    assert count_words_and_lines("", 5) == (0, 0)
