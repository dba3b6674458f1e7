"""glode/conll.py: the CoNLL reader (strict; lenient, with detection, for `glode predict`) on good and
bad files, the writer, and a fuzz test."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glode.conll import Sentence, looks_like_conll, parse_conll, read_conll, write_conll
from glode.errors import GlodeError, InputError

LABELS = ["PER", "ORG", "LOC"]


def write(tmp_path: Path, content: str | bytes, name: str = "in.txt") -> Path:
    p = tmp_path / name
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return p


def test_reads_bio2_with_docstart_and_lines(tmp_path):
    p = write(tmp_path, "-DOCSTART- -X- O O\n\nAnna B-PER\nlebt O\n\n\nin O\nBerlin B-LOC\n")
    sents = read_conll(p, LABELS)
    assert sents == [Sentence(["Anna", "lebt"], ["B-PER", "O"], 3), Sentence(["in", "Berlin"], ["O", "B-LOC"], 7)]
    assert sents[1].spans == [(1, 2, "LOC")]


def test_iob1_tags_are_read_as_bio2(tmp_path):
    p = write(tmp_path, "Jan I-PER\nde I-PER\nVries I-PER\nAjax B-PER\nin O\nRotterdam I-LOC\nStadion I-ORG\n")
    (s,) = read_conll(p, LABELS)
    assert s.tags == ["B-PER", "I-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"]


def test_crlf_bom_multicolumn_and_tabs(tmp_path):
    content = "\ufeffEU NNP B-NP B-ORG\r\nrejects\tVBZ\tB-VP\tO\r\n\r\nPeter  NNP  B-NP   I-PER\r\n"
    sents = read_conll(write(tmp_path, content), LABELS)
    assert [s.tokens for s in sents] == [["EU", "rejects"], ["Peter"]]
    assert [s.tags for s in sents] == [["B-ORG", "O"], ["B-PER"]]
    assert [s.line for s in sents] == [1, 4]


def test_docstart_ends_a_sentence_and_labels_none(tmp_path):
    p = write(tmp_path, "a B-MISC\n-DOCSTART- O\nb O\n")
    assert [s.tokens for s in read_conll(p, None)] == [["a"], ["b"]]


def test_unicode_whitespace_is_part_of_token(tmp_path):
    p = write(tmp_path, "a\u00a0b O\n\u3000 O\n")
    assert read_conll(p, LABELS)[0].tokens == ["a\u00a0b", "\u3000"]


def _error(path: Path, labels=LABELS) -> InputError:
    with pytest.raises(InputError) as info:
        read_conll(path, labels)
    assert isinstance(info.value, GlodeError)
    assert str(path) in str(info.value)
    return info.value


def test_a_missing_file_is_an_input_error_saying_not_found(tmp_path):
    err = _error(tmp_path / "nope.txt")
    assert "not found" in str(err)


@pytest.mark.parametrize("content", ["", "\n\n  \n", "-DOCSTART- O\n\n"])
def test_a_file_without_sentences_is_an_input_error(tmp_path, content):
    err = _error(write(tmp_path, content))
    assert "no sentences" in str(err)


def test_a_line_with_one_column_is_an_error_naming_the_line(tmp_path):
    p = write(tmp_path, "Anna B-PER\n\nfoo O\nbar\n")
    err = _error(p)
    assert err.line == 4 and f"{p}:4" in str(err) and "one column" in str(err)


@pytest.mark.parametrize("tag", ["S-PER", "B-", "PER", "o", "E-LOC"])
def test_a_tag_that_is_not_bio_is_an_error_naming_the_line_and_the_tag(tmp_path, tag):
    p = write(tmp_path, f"x O\n\ny O\nz {tag}\n")
    err = _error(p)
    assert err.line == 4 and f"{p}:4" in str(err) and repr(tag) in str(err)


def test_unknown_types_collected_in_one_error(tmp_path):
    p = write(tmp_path, "a B-PER\nb B-MISC\nc I-MISC\n\nd O\ne I-DATE\n\nf B-MISC\ng B-MISC\n")
    err = _error(p)
    msg = str(err)
    assert "MISC (3 entities" in msg and f"{p}:2" in msg
    assert "DATE (1 entities" in msg and f"{p}:6" in msg
    assert err.line == 2 and "labels" in msg
    assert msg.index("MISC") < msg.index("DATE")


def test_non_utf8_bytes_are_an_error_naming_the_line_and_the_byte_offset(tmp_path):
    p = write(tmp_path, b"Anna B-PER\n\nM\xfcnchen B-LOC\n")
    err = _error(p)
    assert err.line == 3 and f"{p}:3" in str(err)
    assert "byte offset 13" in str(err) and "UTF-8" in str(err)


def test_directory_is_an_error(tmp_path):
    _error(tmp_path)


def test_write_conll_round_trip(tmp_path):
    sents = [Sentence(["Anna", "lebt"], ["B-PER", "O"]), (["in", "New", "York"], ["O", "B-LOC", "I-LOC"])]
    p = write_conll(sents, tmp_path / "sub" / "out.txt")
    assert p.read_text(encoding="utf-8") == "Anna B-PER\nlebt O\n\nin O\nNew B-LOC\nYork I-LOC\n"
    back = read_conll(p, LABELS)
    assert [(s.tokens, s.tags, s.line) for s in back] == [
        (["Anna", "lebt"], ["B-PER", "O"], 1), (["in", "New", "York"], ["O", "B-LOC", "I-LOC"], 4),
    ]
    assert [q.name for q in p.parent.iterdir()] == ["out.txt"]
    for bad in [[(["a b"], ["O"])], [([], [])], [(["a"], ["X"])], [(["a", "b"], ["O"])]]:
        with pytest.raises(ValueError):
            write_conll(bad, tmp_path / "bad.txt")
    assert not (tmp_path / "bad.txt").exists()


def test_lenient_reads_what_strict_refuses_and_keeps_tags_only_where_complete(tmp_path):
    """One malformed file: a token without a tag (line 4), a last column that is no tag (line 7)."""
    p = write(tmp_path, "Anna B-PER\nlebt O\n\nBerlin\nist O\n\nNew York\nSiemens I-ORG\n")
    with pytest.raises(InputError, match=r"in\.txt:4: line has one column \('Berlin'\)"):
        read_conll(p, LABELS)
    lenient = read_conll(p, LABELS, strict=False)
    assert [(s.tokens, s.tags, s.line) for s in lenient] == [
        (["Anna", "lebt"], ["B-PER", "O"], 1),
        (["Berlin", "ist"], None, 4),  # not every line has a tag: none kept
        (["New", "Siemens"], None, 7),  # the first column is the token; 'York' is not a tag
    ]
    p.write_text("Anna B-PER\nlebt O\n\nNew York\n", encoding="utf-8")
    with pytest.raises(InputError, match=r":4: tag 'York' is not"):
        read_conll(p, LABELS)
    p.write_text("Ajax I-ORG\n\nBerlin\n", encoding="utf-8")  # lenient still normalises and checks complete tags
    assert [s.tags for s in read_conll(p, ["ORG"], strict=False)] == [["B-ORG"], None]
    with pytest.raises(InputError, match="entity types not in the label set.*PER"):
        read_conll(write(tmp_path, "Anna B-PER\n\nBerlin\n", "per.txt"), ["ORG"], strict=False)


def test_format_conll_puts_a_blank_line_between_sentences_only():
    from glode.conll import format_conll

    chunks = list(format_conll([(["Anna", "lebt"], ["B-PER", "O"]), (["in", "Ulm"], ["O", "O"], ["O", "B-LOC"])]))
    assert chunks == ["Anna B-PER\nlebt O\n", "\nin O O\nUlm O B-LOC\n"]


def test_reads_the_embedded_english_dev_set_of_500_sentences():
    p = Path(__file__).resolve().parents[1] / "data" / "en" / "dev.txt"
    sents = read_conll(p, LABELS)
    assert len(sents) == 500


LINE_PARTS = st.sampled_from(["O", "B-PER", "I-LOC", "B-MISC", "I-", "x", "-DOCSTART-", "S-ORG", "é", "\t", " ", "  "])
LINES = st.lists(LINE_PARTS, max_size=4).map(lambda parts: " ".join(parts))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=200),
    st.lists(LINES, max_size=12).map(lambda ls: "\n".join(ls).encode("utf-8")),
    st.lists(LINES, max_size=12).map(lambda ls: "\r\n".join(ls).encode("utf-8") + b"\xff"),
), st.sampled_from([None, LABELS]))
def test_fuzz_parse_or_input_error(tmp_path, data, labels):
    p = tmp_path / "fuzz.txt"
    p.write_bytes(data)
    try:
        sents = read_conll(p, labels)
    except InputError as err:
        assert str(p) in str(err)
        return
    for s in sents:
        assert len(s.tokens) == len(s.tags) > 0 and s.line >= 1
        assert all(t == "O" or t[:2] in ("B-", "I-") for t in s.tags)


# ------------------------------------------------------------------ issue 20: no silent collapse

GOOD = "Anna B-PER\nlebt O\n\nin O\nBerlin B-LOC\n\nAjax B-ORG\n"


def test_cr_only_line_ends_are_read_like_lf(tmp_path):
    """`tr '\\n' '\\r'` used to give one sentence of one token, exit 0."""
    lf = read_conll(write(tmp_path, GOOD, "lf.txt"), LABELS)
    cr = read_conll(write(tmp_path, GOOD.replace("\n", "\r"), "cr.txt"), LABELS)
    assert cr == lf and len(cr) == 3


def test_bom_in_the_middle_is_an_error_naming_the_line(tmp_path):
    joined = "\ufeff" + GOOD + "\n" + "\ufeff" + GOOD  # two files with marks joined by `cat`
    p = write(tmp_path, joined)
    with pytest.raises(InputError, match="byte-order mark") as err:
        read_conll(p, LABELS)
    assert err.value.line == 9
    assert read_conll(write(tmp_path, "\ufeff" + GOOD, "start.txt"), LABELS) == read_conll(write(tmp_path, GOOD), LABELS)


def test_stray_carriage_return_in_a_line_is_an_error(tmp_path):
    with pytest.raises(InputError, match="carriage return") as err:
        read_conll(write(tmp_path, "Anna B-PER\nlebt O\rin O\n"), LABELS)
    assert err.value.line == 2


def test_implausible_counts_for_the_size_are_warned(tmp_path):
    from glode.conll import read_conll_counts

    _, counts = read_conll_counts(write(tmp_path, GOOD * 50), LABELS)
    assert counts["warnings"] == []
    # no blank lines between sentences: one giant sentence
    _, counts = read_conll_counts(write(tmp_path, "".join(f"w{i} O\n" for i in range(1500)), "one.txt"), LABELS)
    assert len(counts["warnings"]) == 1 and "one.txt:1: a sentence of 1500 tokens" in counts["warnings"][0]
    # few tokens for many bytes (e.g. a tag column that swallowed the text)
    _, counts = read_conll_counts(write(tmp_path, "".join(f"{'x' * 300} O\n\n" for _ in range(10)), "big.txt"), LABELS)
    assert len(counts["warnings"]) == 1 and "bytes per token line" in counts["warnings"][0]


# ------------------------------------------------------------------ issue 39: tokens cut short, other encodings


def test_a_tab_inside_a_token_is_an_error_naming_the_line(tmp_path):
    """`Savo<TAB>yer B-PER` used to become the word `Savo`, silently."""
    p = write(tmp_path, "Tom B-PER\nSavo\tyer I-PER\nlebt O\n")
    with pytest.raises(InputError, match="a tab inside a token") as err:
        read_conll(p, LABELS)
    assert err.value.line == 2 and f"{p}:2:" in str(err.value) and "'Savo\\tyer I-PER'" in str(err.value)
    # a tab-separated file with a tab inside a token has one column too many: named as well
    p = write(tmp_path, "Tom\tB-PER\nSavo\tyer\tI-PER\n", "tsv.txt")
    with pytest.raises(InputError, match=r"3 columns .* but line 1 has 2: a space or tab inside a token") as err:
        read_conll(p, LABELS)
    assert err.value.line == 2


def test_a_space_inside_a_token_is_an_error_not_a_shorter_word(tmp_path):
    p = write(tmp_path, "in O\nBerlin B-LOC\n\nNew York B-LOC\n")
    with pytest.raises(InputError, match="3 columns .* but line 1 has 2") as err:
        read_conll(p, LABELS)
    assert err.value.line == 4
    # the same number of columns everywhere (CoNLL-2003's four) is fine, however they are separated
    assert read_conll(write(tmp_path, "EU NNP B-NP B-ORG\nrejects\tVBZ\tB-VP\tO\n", "four.txt"), LABELS)[0].tags == ["B-ORG", "O"]


@pytest.mark.parametrize("encoding, bom, name", [("utf-16-le", b"\xff\xfe", "UTF-16"), ("utf-16-be", b"\xfe\xff", "UTF-16"),
                                                  ("utf-32-le", b"\xff\xfe\x00\x00", "UTF-32"),
                                                  ("utf-32-be", b"\x00\x00\xfe\xff", "UTF-32")])
def test_utf16_and_utf32_files_are_named_with_the_iconv_command(tmp_path, encoding, bom, name):
    """A UTF-16 file used to be 'not valid UTF-8' with an `iconv -f latin1` hint, the wrong fix."""
    p = write(tmp_path, bom + GOOD.encode(encoding))
    with pytest.raises(InputError) as err:
        read_conll(p, LABELS)
    msg = str(err.value)
    assert msg.startswith(f"{p}: a {name} file") and f"iconv -f {name} -t UTF-8 {p}" in msg and "latin1" not in msg
    assert msg.count("\n") == 0
    # without a byte-order mark: NUL bytes, named with the line
    p = write(tmp_path, GOOD.encode("utf-16-le"), "nobom.txt")
    with pytest.raises(InputError, match="NUL byte at byte offset 1: a UTF-16 or UTF-32 file without a byte-order mark"):
        read_conll(p, LABELS)


def test_conll_detection_and_reading():
    assert looks_like_conll(["Anna B-PER", "lives O", "", "Ajax B-ORG"])
    assert looks_like_conll(["-DOCSTART- -X- O O", "", "Anna"])
    assert not looks_like_conll(["Anna lives in Berlin", "Ajax won"])
    assert not looks_like_conll(["Anna O", "lives in Berlin"])
    sents = parse_conll(["Anna B-PER", "lives O", "", "", "Ajax x B-ORG", "won O", ""], strict=False)
    assert [(s.tokens, s.tags, s.line) for s in sents] == [
        (["Anna", "lives"], ["B-PER", "O"], 1), (["Ajax", "won"], ["B-ORG", "O"], 5)]
    assert parse_conll(["Anna", "lives"], strict=False)[0].tags is None
