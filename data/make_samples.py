"""Re-create the embedded WikiAnn samples in data/ from the shared benchmark copy.

Each output file is an unmodified byte prefix of the shared file: its first N sentences, cut
right after the last token line of sentence N. Only WikiAnn (CC BY-SA) is sampled; CoNLL text
must never be copied into the repository.

Usage (from the repository root):  python data/make_samples.py [--shared ../shared/data] [--out data]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from glode.atomic import atomic_write_bytes
from glode.conll import read_conll

LABELS = ["PER", "ORG", "LOC"]
TARGETS = ["de", "es", "nl", "ar", "hi", "zh"]
#: (language, output split, shared split, number of sentences)
SAMPLES = [("en", "train", "train", 3000), ("en", "dev", "dev", 500)] + [
    (lang, split, split, n) for lang in TARGETS for split, n in (("train", 2000), ("test", 1000))
]


def prefix_sentences(data: bytes, n: int) -> bytes:
    """The bytes of the first `n` sentences (blank-line separated), ending after sentence n's last line."""
    count = 0
    pos = 0
    in_sentence = False
    end_of_last_token_line = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        nxt = len(data) if nl < 0 else nl + 1
        blank = not data[pos:nxt].strip()
        if blank and in_sentence:
            count += 1
            in_sentence = False
            if count == n:
                return data[:end_of_last_token_line]
        elif not blank:
            in_sentence = True
            end_of_last_token_line = nxt
        pos = nxt
    if in_sentence:
        count += 1
        if count == n:
            return data[:end_of_last_token_line]
    raise SystemExit(f"only {count} sentences available, {n} requested")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"), help="shared data folder (holds wikiann/)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder (default: data/)")
    args = parser.parse_args(argv)
    src_root = args.shared / "wikiann"
    if not src_root.is_dir():
        print(f"error: {src_root} not found; pass --shared pointing at the folder that holds wikiann/", file=sys.stderr)
        return 2
    total = 0
    for lang, split, src_split, n in SAMPLES:
        src = src_root / lang / f"{src_split}.txt"
        if not src.is_file():
            print(f"error: {src} not found", file=sys.stderr)
            return 2
        data = prefix_sentences(src.read_bytes(), n)
        dst = args.out / lang / f"{split}.txt"
        atomic_write_bytes(dst, data)
        got = read_conll(dst, LABELS)  # validates the sample and its sentence count
        assert len(got) == n, (dst, len(got), n)
        total += len(data)
        digest = hashlib.sha256(data).hexdigest()[:16]
        print(f"{dst}: {n} sentences, {sum(len(s.tokens) for s in got)} tokens, {len(data)} bytes, sha256 {digest}...")
    print(f"total: {total} bytes ({total / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
