"""CoNLL reader/validator and writer: the only place glode reads or writes CoNLL text.

Input files come from users and other tools, so every problem is reported as an `InputError`
with the file, the 1-based line and what to do, instead of a traceback from deep inside training.
Tags are normalised to BIO2 on reading so that the rest of the project sees one scheme.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from glode.atomic import atomic_write_bytes
from glode.errors import InputError
from glode.spans import Span, parse_tag, tags_to_spans, to_bio2

__all__ = ["Sentence", "read_conll", "read_conll_counts", "parse_conll", "looks_like_conll", "format_conll", "write_conll",
           "DOCSTART", "decode_utf8"]

DOCSTART = "-DOCSTART-"
_BOM = b"\xef\xbb\xbf"
# Columns are separated by spaces/tabs only: Python's str.split() would also split on
# characters such as U+00A0 or U+3000 that can be (part of) a token.
_COLUMN_SEP = re.compile(r"[ \t]+")
_BAD_TOKEN_CHARS = re.compile(r"[ \t\r\n]")


@dataclass
class Sentence:
    """One sentence: words, their BIO2 tags, and where it starts in its source file."""

    tokens: list[str]
    tags: list[str] | None  # None: read leniently from lines that did not all carry a tag
    line: int = 0  # 1-based line of the first token; 0 when not read from a file

    @property
    def spans(self) -> list[Span]:
        """Gold entities as word-level spans (end exclusive)."""
        return tags_to_spans(self.tags)


# byte-order marks of the other Unicode encodings, longest first (UTF-32 LE starts like UTF-16 LE)
_OTHER_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32", "little-endian"), (b"\x00\x00\xfe\xff", "UTF-32", "big-endian"),
               (b"\xff\xfe", "UTF-16", "little-endian"), (b"\xfe\xff", "UTF-16", "big-endian"))


def decode_utf8(path: str | Path, raw: bytes) -> str:
    """Strict UTF-8 decoding (BOM tolerated) that locates the first bad byte by offset and line;
    a UTF-16 or UTF-32 file (by its byte-order mark) or NUL bytes (the same without a mark) are
    named as such, with the ``iconv`` command that converts them."""
    for bom, encoding, order in _OTHER_BOMS:
        if raw.startswith(bom):
            raise InputError(path, None, f"a {encoding} file ({order}, byte-order mark {bom.hex(' ').upper()}), not "
                             f"UTF-8; re-encode the file as UTF-8: `iconv -f {encoding} -t UTF-8 {path} > out.txt`")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise InputError(path, raw.count(b"\n", 0, nul) + 1, f"a NUL byte at byte offset {nul}: a UTF-16 or UTF-32 file "
                         "without a byte-order mark, or not a text file; re-encode the file as UTF-8 (e.g. `iconv -f "
                         f"UTF-16LE -t UTF-8 {path} > out.txt`)")
    offset = len(_BOM) if raw.startswith(_BOM) else 0
    try:
        return raw[offset:].decode("utf-8")
    except UnicodeDecodeError as err:
        pos = offset + err.start
        line = raw.count(b"\n", 0, pos) + 1
        raise InputError(
            path,
            line,
            f"not valid UTF-8: byte 0x{raw[pos]:02x} at byte offset {pos} ({err.reason}); "
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`)",
        ) from None


def _line_ends(path: Path, text: str) -> str:
    r"""``\n`` line ends, or an error: a file with only ``\r`` line ends (classic Mac, or
    ``tr '\n' '\r'``) is read line by line instead of as one line; a stray ``\r`` inside a line
    of a ``\n`` file, and a byte-order mark anywhere but the start (files joined with ``cat``),
    would otherwise silently become part of a token or a junk sentence."""
    if "\r" in text and "\n" not in text:
        text = text.replace("\r", "\n")
    bom = text.find("\ufeff")
    if bom >= 0:
        raise InputError(path, text.count("\n", 0, bom) + 1, "a UTF-8 byte-order mark (U+FEFF) in the middle of the "
                         "file, as left by joining files with `cat`; remove it (`sed -i 's/\\xef\\xbb\\xbf//' FILE`) or "
                         "join the files without their marks")
    stray = re.search(r"\r(?!\n)", text)
    if stray:
        raise InputError(path, text.count("\n", 0, stray.start()) + 1, "a carriage return (\\r) inside a line: the "
                         "file mixes line-end styles; convert it to \\n line ends (e.g. `dos2unix FILE`)")
    return text


# A CoNLL line is a word and a tag; far more bytes per token line, or one giant sentence, means
# the file was not split the way it was written (odd line ends, missing blank lines).
MAX_BYTES_PER_TOKEN = 100
MAX_SENTENCE_TOKENS = 1000


def plausibility_warnings(path: str | Path, size: int, sentences: Sequence[Sentence]) -> list[str]:
    """Warnings for a corpus whose token or sentence counts do not fit its size in bytes."""
    tokens = sum(len(s.tokens) for s in sentences)
    out = []
    if tokens and size > 10 * MAX_BYTES_PER_TOKEN and size / tokens > MAX_BYTES_PER_TOKEN:
        out.append(f"{path}: {size} bytes but only {tokens} tokens ({size // tokens} bytes per token line, usually "
                   "under 40); check its line ends and that the tag is the last column")
    longest = max(sentences, key=lambda s: len(s.tokens), default=None)
    if longest is not None and len(longest.tokens) > MAX_SENTENCE_TOKENS:
        out.append(f"{path}:{longest.line}: a sentence of {len(longest.tokens)} tokens; are the blank lines "
                   "between sentences missing?")
    return out


def read_conll(
    path: str | Path, labels: Sequence[str] | None = None, ignore: Sequence[str] = (), strict: bool = True
) -> list[Sentence]:
    """Read and validate a CoNLL-style file into BIO2 sentences (see `read_conll_counts`)."""
    return read_conll_counts(path, labels, ignore, strict)[0]


def read_conll_counts(
    path: str | Path, labels: Sequence[str] | None = None, ignore: Sequence[str] = (), strict: bool = True
) -> tuple[list[Sentence], dict[str, dict[str, int]]]:
    """Read and validate a CoNLL-style file into BIO2 sentences, with entity counts per type.

    Format: one `token ... tag` line per word (`parse_conll`; with ``strict=False`` a line may
    hold the token alone and a sentence without a tag on every line keeps ``tags=None``).
    IOB1 and BIO2 are accepted; tags are normalised with
    `to_bio2`. `\\r\\n` and `\\r`-only line ends and a leading UTF-8 BOM are accepted; a BOM
    elsewhere, a stray `\\r` in a line and other non-UTF-8 bytes are errors.
    `labels` is the allowed set of entity types (None accepts any); every unknown type is
    reported in one error with its entity count and first location. Entities of a type in
    `ignore` are read as `O` (e.g. CoNLL's MISC when the target data has no such type).
    Returns the sentences and `{"entities": {type: n}, "ignored": {type: n}, "warnings": [...]}`
    (`plausibility_warnings`).
    """
    path = Path(path)
    raw = _read_bytes(path)
    sentences = parse_conll(_line_ends(path, decode_utf8(path, raw)).split("\n"), path, strict)
    counts, ignored, unknown = _normalise_tags(sentences, None if labels is None else set(labels), set(ignore))
    if unknown:
        raise _unknown_types_error(path, labels, unknown)
    return sentences, {"entities": dict(sorted(counts.items())), "ignored": dict(sorted(ignored.items())),
                       "warnings": plausibility_warnings(path, len(raw), sentences)}


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise InputError(path, None, "file not found; check the path (relative paths are resolved "
                         f"from {Path.cwd()}) or run the stage that creates it")
    if path.is_dir():
        raise InputError(path, None, "is a directory; expected a CoNLL text file with one 'token tag' per line")
    try:
        return path.read_bytes()
    except OSError as err:
        raise InputError(path, None, f"cannot be read ({err.strerror or err}); check its permissions") from None


def _normalise_tags(sentences: list[Sentence], allowed: set[str] | None, ignored_types: set[str],
                    ) -> tuple[dict[str, int], dict[str, int], dict[str, list[int]]]:
    """Tags to BIO2 in place, ignored types to O; returns entity counts per type, ignored
    entities per type, and the types not ``allowed`` as ``{type: [entity count, first line]}``."""
    unknown: dict[str, list[int]] = {}
    counts: dict[str, int] = {}
    ignored: dict[str, int] = {}
    for sent in sentences:
        if sent.tags is None:
            continue
        bio2 = to_bio2(sent.tags)
        for i, tag in enumerate(bio2):
            typ = tag[2:]
            if typ in ignored_types:
                bio2[i] = "O"
                if tag[0] == "B":
                    ignored[typ] = ignored.get(typ, 0) + 1
            elif tag[0] == "B":
                counts[typ] = counts.get(typ, 0) + 1
                if allowed is not None and typ not in allowed:
                    entry = unknown.setdefault(typ, [0, sent.line + i])  # a sentence's lines are consecutive
                    entry[0] += 1
        sent.tags = bio2
    return counts, ignored, unknown


def _unknown_types_error(path: Path, labels: Sequence[str] | None, unknown: dict[str, list[int]]) -> InputError:
    """One error for every entity type outside the label set, with its count and first location."""
    ordered = sorted(unknown.items(), key=lambda kv: kv[1][1])
    listing = "; ".join(f"{typ} ({n} entities, first at {path}:{ln})" for typ, (n, ln) in ordered)
    return InputError(
        path,
        ordered[0][1][1],
        f"entity types not in the label set [{', '.join(labels or [])}]: {listing}. "
        "Add them to the `data.labels` parameter, list them under `data.ignore-labels` to read "
        "them as O (e.g. CoNLL MISC for a WikiAnn target), or relabel them in the data",
    )


def _columns(line: str) -> list[str]:
    """The columns of a line (none for a blank one); ``\\r`` of a CRLF line end is not part of them."""
    stripped = line.rstrip("\r").strip(" \t")
    return _COLUMN_SEP.split(stripped) if stripped else []


def _check_columns(source: str | Path, lineno: int, line: str, cols: list[str],
                   width: tuple[int, int] | None) -> tuple[int, int]:
    """A token line must not mix tabs and spaces between its columns, and must have as many
    columns as the file's first token line: either is a tab or space inside a token, whose
    first part would silently become the word (``Savo<TAB>yer B-PER`` read as ``Savo``)."""
    seps = set("".join(_COLUMN_SEP.findall(line.rstrip("\r").strip(" \t"))))
    if len(seps) > 1:
        raise InputError(source, lineno, f"tabs and spaces both separate the columns of {_show(line.rstrip())}: a tab "
                         "inside a token? Columns are separated by spaces or tabs, so a token cannot contain either; "
                         "remove it or replace it (e.g. by '_')")
    if width is None:
        return len(cols), lineno
    if len(cols) != width[0]:
        raise InputError(source, lineno, f"{len(cols)} columns ({_show(line.rstrip())}) but line {width[1]} has "
                         f"{width[0]}: a space or tab inside a token? Columns are separated by spaces or tabs, so a "
                         "token cannot contain either; every line needs the same columns, the tag last")
    return width


def _tag_or_none(column: str) -> str | None:
    try:
        parse_tag(column)
    except ValueError:
        return None
    return column


def parse_conll(lines: Iterable[str], source: str | Path = "<input>", strict: bool = True) -> list[Sentence]:
    """Sentences of CoNLL text lines, tags as written (`read_conll_counts` normalises and checks them).

    A line per word, columns separated by spaces or tabs: the first column is the token, the
    last the tag; a blank line between sentences; `-DOCSTART-` lines skipped (they also end a
    sentence). ``strict`` (what the pipeline reads): every other line must be `TOKEN ... TAG`
    with a BIO tag, else an `InputError` names the line. Lenient (``strict=False``, what
    `glode predict` reads): a line may hold the token alone or end in a column that is not a
    tag; a sentence keeps its tags only when every line has one, else ``tags`` is None.
    `source` names the input in errors.
    """
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str | None] = []
    first = 0
    width: tuple[int, int] | None = None  # (columns, line) of the first token line: every other must match

    def flush() -> None:
        if tokens:
            sentences.append(Sentence(list(tokens), None if None in tags else list(tags), first))
        tokens.clear()
        tags.clear()

    for lineno, line in enumerate(lines, start=1):
        cols = _columns(line)
        if not cols or cols[0] == DOCSTART:
            flush()
            continue
        tag = _tag_or_none(cols[-1]) if len(cols) >= 2 else None
        if strict and len(cols) < 2:
            raise InputError(
                source,
                lineno,
                f"line has one column ({_show(cols[0])}); expected 'TOKEN ... TAG' separated by spaces "
                "or tabs, with a blank line between sentences (a token containing a space, or a missing tag?)",
            )
        if strict and tag is None:
            raise InputError(
                source,
                lineno,
                f"tag {_show(cols[-1])} is not 'O', 'B-TYPE' or 'I-TYPE'; the tag must be the last column "
                "(convert BIOES/BILOU tags to BIO first)",
            )
        if strict:
            width = _check_columns(source, lineno, line, cols, width)
        if not tokens:
            first = lineno
        tokens.append(cols[0])
        tags.append(tag)
    flush()
    if not sentences:
        expected = ("one 'token tag' pair per line" if strict else
                    "one token per line (optionally 'token ... tag'), a blank line between sentences")
        raise InputError(source, None, "no sentences found (the input is empty or holds only blank and "
                         f"-DOCSTART- lines); expected {expected}")
    return sentences


def looks_like_conll(lines: Sequence[str]) -> bool:
    """Guess whether text is CoNLL from its first 200 lines: yes when one is ``-DOCSTART-`` or every
    non-blank one is ``token ... tag`` (two or more columns, the last a BIO tag). Token-only
    CoNLL has to be named as such (``glode predict --input-format conll``)."""
    body = [cols for cols in map(_columns, lines[:200]) if cols]
    if any(cols[0] == DOCSTART for cols in body):
        return True
    return bool(body) and all(len(cols) >= 2 and _tag_or_none(cols[-1]) is not None for cols in body)


def _show(s: str, limit: int = 40) -> str:
    """A short, printable rendering of user data for an error message."""
    return repr(s if len(s) <= limit else s[:limit] + "...")


def format_conll(sentences: Iterable[Sequence[Sequence[str]]]) -> Iterator[str]:
    """CoNLL text, one chunk per sentence; a sentence is its columns, e.g. ``(tokens, tags)`` or
    ``(tokens, gold, tags)``: a line per word with its columns separated by a space, a blank line
    between sentences (none after the last). The one CoNLL writer: files (`write_conll`),
    `glode labels export` and `glode predict`; it does not check what it writes."""
    for i, columns in enumerate(sentences):
        yield ("\n" if i else "") + "".join(" ".join(row) + "\n" for row in zip(*columns))


def write_conll(sentences: Iterable[Sentence | tuple[Sequence[str], Sequence[str]]], path: str | Path) -> Path:
    """Write sentences as `token tag` lines (blank line between sentences), atomically.

    Accepts `Sentence` objects or `(tokens, tags)` pairs. Raises ValueError for data that would
    not read back the same: an empty sentence, a token with whitespace, an invalid tag.
    """
    pairs = [(item.tokens, item.tags) if isinstance(item, Sentence) else item for item in sentences]
    for i, (toks, tgs) in enumerate(pairs):
        if len(toks) != len(tgs):
            raise ValueError(f"sentence {i}: {len(toks)} tokens but {len(tgs)} tags")
        if not toks:
            raise ValueError(f"sentence {i} is empty; CoNLL cannot represent an empty sentence")
        for tok, tag in zip(toks, tgs):
            if not tok or _BAD_TOKEN_CHARS.search(tok) or tok == DOCSTART:
                raise ValueError(f"sentence {i}: token {tok!r} cannot be written to CoNLL")
            parse_tag(tag)
            if _BAD_TOKEN_CHARS.search(tag):
                raise ValueError(f"sentence {i}: tag {tag!r} contains whitespace")
    return atomic_write_bytes(path, "".join(format_conll(pairs)).encode("utf-8"))
