"""The span NER model of docs/METHOD.md §1, with an auxiliary masked-LM head, and its folder format.

A model folder is self-describing: ``glode_model.json`` holds the format version, the
class list (label map), the span cap and sequence length, and the parameters it was
trained with; ``config.json`` (the encoder's config with the label map) and the tokenizer
files lie at the top, so that Hugging Face's ``AutoConfig`` and ``AutoTokenizer`` open the
folder itself; ``weights.safetensors`` holds every trained tensor; ``README.md`` is a model
card (labels, training data, dev scores, the parameters and the command that made it). When
the word embeddings were frozen (the default) they are not copied into each round's folder
(96M of e5-small's 117M parameters): the folder names the encoder directory they come from,
relative to itself, and a fingerprint that is checked on load; a copy elsewhere loads with
that encoder folder passed explicitly (the error says so, the card names it).

Format 1 (before issue 23) kept the config and tokenizer in ``encoder/``; it still loads.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from glode.atomic import atomic_dir
from glode.errors import GlodeError
from glode.features import N_CASES, N_WIDTH_BUCKETS, SpanBatch
from glode.progress import no_loading_bars

FORMAT_VERSION = 2  # 2: config and tokenizer at the top of the folder (1: under encoder/)
READABLE_VERSIONS = (1, 2)
CARD_FILE = "README.md"
META_FILE = "glode_model.json"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.pt"  # a chained run's AdamW state (retrain.schedule-rounds), for the next round
WORD_EMB_KEY = "encoder.embeddings.word_embeddings.weight"


@dataclass
class SpanModelConfig:
    """Architecture of the span classifier (everything needed to rebuild it)."""

    classes: list[str]  # "O" first, then entity types
    max_span_len: int = 4
    max_seq_len: int = 128
    width_dim: int = 50
    length_dim: int = 100
    case_dim: int = 100
    dropout: float = 0.2

    def __post_init__(self):
        if not self.classes or self.classes[0] != "O":
            raise ValueError("classes must start with 'O'")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"duplicate classes in {self.classes}")

    @property
    def entity_types(self) -> list[str]:
        return self.classes[1:]

    def feature_dim(self, hidden: int) -> int:
        """Width of the span feature z on an encoder of ``hidden`` units: both end points, then
        the width, length and case embeddings."""
        return 2 * hidden + self.width_dim + self.length_dim + self.case_dim


def gather_tokens(hidden: torch.Tensor, sentence: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """``hidden[sentence, position]`` (rows of a (B, T, H) tensor), with a backward that gives the
    same bits on every run. The backward of advanced indexing is ``index_put_`` with
    ``accumulate=True``, which on a CPU with several threads adds the rows with atomic float adds
    once the gradient has 32,768 elements or more; a token that starts or ends several spans then
    sums its gradient in an order that changes from run to run (issue 40, docs/RELIABILITY.md).
    An embedding lookup into the flattened rows computes the same values, and its backward adds
    each row's gradients in index order on the CPU: deterministic, and faster than the atomic adds
    (docs/BENCHMARKS.md, "Deterministic span gather"). (Not ``index_select``: torch lists its
    backward on CUDA among the nondeterministic ops, and not the embedding's.)"""
    return nn.functional.embedding(sentence * hidden.shape[1] + position, hidden.flatten(0, 1))


class MaskedLMHead(nn.Module):
    """BERT-style MLM transform whose decoder is tied to the encoder's input embeddings."""

    def __init__(self, hidden: int, vocab: int, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, hidden: torch.Tensor, embeddings: torch.Tensor, vocab: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over the whole vocabulary, or over the ids ``vocab`` (sorted) only, in its order."""
        bias = self.bias
        if vocab is not None:
            embeddings, bias = embeddings.index_select(0, vocab), bias.index_select(0, vocab)
        return self.norm(self.act(self.dense(hidden))) @ embeddings.t() + bias


class SpanNERModel(nn.Module):
    """Encoder + span representation (endpoints, width, length, case) + linear classifier."""

    def __init__(self, encoder: nn.Module, config: SpanModelConfig):
        super().__init__()
        self.encoder = encoder
        self.config = config
        hidden = encoder.config.hidden_size
        self.width_embedding = nn.Embedding(N_WIDTH_BUCKETS, config.width_dim)
        self.length_embedding = nn.Embedding(config.max_span_len + 1, config.length_dim)
        self.case_projection = nn.Linear(N_CASES, config.case_dim, bias=False)  # = summed case embeddings
        self.dropout = nn.Dropout(config.dropout)
        self.feature_dim = config.feature_dim(hidden)
        self.classifier = nn.Linear(self.feature_dim, len(config.classes))
        eps = getattr(encoder.config, "layer_norm_eps", 1e-12)
        self.mlm_head = MaskedLMHead(hidden, encoder.get_input_embeddings().num_embeddings, eps)

    @property
    def num_classes(self) -> int:
        return len(self.config.classes)

    def freeze_word_embeddings(self, frozen: bool = True) -> None:
        self.encoder.get_input_embeddings().weight.requires_grad_(not frozen)

    @property
    def word_embeddings_frozen(self) -> bool:
        return not self.encoder.get_input_embeddings().weight.requires_grad

    def span_features(self, batch: SpanBatch) -> torch.Tensor:
        """The span feature z (before dropout): what denoising compares across spans."""
        hidden = self.encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        start = gather_tokens(hidden, batch.span_sentence, batch.span_start)
        end = gather_tokens(hidden, batch.span_sentence, batch.span_end)
        return torch.cat(
            [
                start,
                end,
                self.width_embedding(batch.width_bucket),
                self.length_embedding(batch.word_len.clamp(max=self.config.max_span_len)),
                self.case_projection(batch.case_counts),
            ],
            dim=-1,
        )

    def forward(self, batch: SpanBatch) -> torch.Tensor:
        """Span logits (S, C)."""
        return self.classifier(self.dropout(self.span_features(batch)))

    def mlm_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                 vocab: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy over masked positions only (logits only where needed). With ``vocab``
        (sorted ids holding every label) the softmax runs over those ids alone: a fixed
        candidate set, as in sampled softmax, that cuts the output layer from the encoder's
        whole vocabulary (250k rows for the default encoder) to the MLM text's own sub-tokens."""
        picked = labels != -100
        if not bool(picked.any()):
            return input_ids.new_zeros((), dtype=torch.float32)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        targets = labels[picked]
        if vocab is not None:
            at = torch.searchsorted(vocab, targets).clamp(max=len(vocab) - 1)
            if not torch.equal(vocab[at], targets):
                raise ValueError("a masked sub-token is not in the MLM vocabulary")
            targets = at
        logits = self.mlm_head(hidden[picked], self.encoder.get_input_embeddings().weight, vocab)
        return nn.functional.cross_entropy(logits, targets)


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special_ids: set[int],
    mask_id: int,
    rate: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each real non-special sub-token by ``mask_id`` with probability ``rate``.

    Returns (masked ids, labels) with labels -100 wherever nothing was masked.
    """
    maskable = attention_mask.bool()
    for sid in special_ids:
        maskable &= input_ids != sid
    chosen = (torch.rand(input_ids.shape, generator=generator) < rate) & maskable
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    return torch.where(chosen, torch.full_like(input_ids, mask_id), input_ids), labels


def tensor_fingerprint(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()


def build_model(encoder_dir: str | Path, config: SpanModelConfig, seed: int) -> tuple[SpanNERModel, object]:
    """A fresh span model on top of a pretrained encoder directory; head weights seeded."""
    from glode.encoder import check_max_seq_len, load_encoder, max_tokens

    encoder, tokenizer = load_encoder(encoder_dir)
    check_max_seq_len(config.max_seq_len, max_tokens(encoder.config), f"folder {encoder_dir}")
    torch.manual_seed(seed)
    return SpanNERModel(encoder, config), tokenizer


def save_model(
    model: SpanNERModel,
    tokenizer,
    out_dir: str | Path,
    encoder_dir: str | Path,
    train_params: dict | None = None,
    extra: dict | None = None,
    command: str | None = None,
    optimizer_state: dict | None = None,
) -> Path:
    """Write a model folder atomically (see module docstring for the layout). ``extra`` goes
    into the metadata (``round``, ``history``, ``training_data``: what the model card reports);
    ``command`` is the command line that made it, for the card; ``optimizer_state`` (a chained
    run's AdamW state, ``retrain.schedule-rounds``) goes to ``OPTIMIZER_FILE`` for the next round."""
    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}  # .cpu(): no copy on the CPU
    word_emb = None
    if model.word_embeddings_frozen:
        word_emb = {
            "encoder_dir": os.path.relpath(Path(encoder_dir).resolve(), out_dir.resolve()),
            "sha256": tensor_fingerprint(state.pop(WORD_EMB_KEY)),
        }
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": "glode-span-ner",
        "config": asdict(model.config),
        "classes": model.config.classes,
        "label2id": {c: i for i, c in enumerate(model.config.classes)},
        "external_word_embeddings": word_emb,
        "train_params": train_params or {},
        **(extra or {}),
    }
    with atomic_dir(out_dir) as tmp:
        tmp = Path(tmp)
        hf_config = copy.deepcopy(model.encoder.config)  # the encoder's, with the NER label map for HF tools
        hf_config.id2label = dict(enumerate(model.config.classes))
        hf_config.label2id = {c: i for i, c in enumerate(model.config.classes)}
        hf_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / CARD_FILE).write_text(model_card(meta, command), encoding="utf-8")
    return out_dir


def model_card(meta: dict, command: str | None = None) -> str:
    """A short README.md for a model folder: what it tags, what it was trained on, its dev
    scores, how to load it and what it needs, and how it was made. Its bytes depend only on
    its arguments, so a rerun writes the same card."""
    round_name = meta.get("round") or "a glode model"
    classes = meta["classes"]
    lines = [f"# glode span NER model ({round_name})", "",
             "A span-based named-entity tagger trained by glode (GLoDe self-training for cross-lingual NER); "
             "`glode_model.json` holds everything below in full.", "",
             f"- **Labels**: {', '.join(classes[1:])} (class 0 is O; `config.json` has `id2label`)",
             f"- **Longest span**: {meta['config']['max_span_len']} words; sequence length "
             f"{meta['config']['max_seq_len']} sub-tokens (longer sentences are scored in windows)"]
    data = meta.get("training_data") or {}
    if data:
        lines += ["", "## Training data", "", "| table | file | sentences |", "|---|---|---|"]
        lines += [f"| {name} | `{d.get('file', '?')}` | {d.get('sentences', '?')} |" for name, d in sorted(data.items())]
    history = meta.get("history") or []
    last = history[-1] if history else {}
    if "dev_f1" in last:
        lines += ["", "## Metrics", "",
                  f"Source dev set after epoch {last.get('epoch')}: F1 {last['dev_f1']:.4f} (P {last.get('dev_precision', 0):.4f}, "
                  f"R {last.get('dev_recall', 0):.4f}), seqeval strict IOB2. The target test scores are written by the "
                  "pipeline's evaluate stage (`metrics/rN.json`), not here."]
    params = meta.get("train_params") or {}
    if params:
        lines += ["", "## Training parameters", "", "| parameter | value |", "|---|---|"]
        lines += [f"| {k} | `{json.dumps(v)}` |" for k, v in sorted(params.items())]
    lines += ["", "## Use", "", "```python", "from glode.model import load_model",
              "model, tokenizer, meta = load_model(\"path/to/this/folder\")  # or: glode predict --model FOLDER", "```", "",
              "`transformers.AutoConfig` and `AutoTokenizer` open this folder; the span model itself needs glode."]
    ext = meta.get("external_word_embeddings")
    if ext:
        lines += ["", f"The word embeddings were frozen during training and are not stored here: they are read from "
                  f"the encoder folder `{ext['encoder_dir']}` (relative to this folder) and checked against SHA-256 "
                  f"`{ext['sha256'][:16]}...`. A copy of this folder elsewhere needs that encoder folder passed "
                  "explicitly: `load_model(FOLDER, encoder_dir=ENCODER)` or `glode predict --encoder ENCODER`."]
    if command:
        lines += ["", "## Made by", "", "```", command, "```"]
    return "\n".join(lines) + "\n"


MADE_BY = "model folders are written by the train_source and train_target stages (models/rN) or save_model"


def read_model_meta(model_dir: str | Path) -> dict:
    """Read and validate a model folder's metadata: every file and key ``load_model`` needs is
    checked here, so an incomplete folder is named with what is missing instead of failing in
    transformers (which would try to download a missing ``encoder/`` from a model hub)."""
    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise GlodeError(f"{model_dir}: no such model folder; {MADE_BY}: run `dvc repro` or check the path")
    if not model_dir.is_dir():
        raise GlodeError(f"{model_dir}: is a file, not a model folder; {MADE_BY}")
    meta_path = model_dir / META_FILE
    if not meta_path.is_file():
        raise GlodeError(f"{model_dir}: not a glode model folder (no {META_FILE}); {MADE_BY}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GlodeError(f"{meta_path}: unreadable model metadata ({exc}); retrain the model") from exc
    if not isinstance(meta, dict):
        raise GlodeError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}; {MADE_BY}")
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise GlodeError(
            f"{meta_path}: model format version {version!r}, this glode reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}; retrain the model with this glode version"
        )
    config = meta.get("config")
    if not isinstance(config, dict):
        raise GlodeError(f"{meta_path}: no 'config' entry (the span model's architecture); the file is incomplete: "
                         f"{MADE_BY}, retrain the model")
    try:
        SpanModelConfig(**config)
    except (TypeError, ValueError) as exc:
        raise GlodeError(f"{meta_path}: bad 'config' entry ({exc}); {MADE_BY}, retrain the model") from None
    ext = meta.get("external_word_embeddings")
    if ext is not None and not (isinstance(ext, dict) and {"encoder_dir", "sha256"} <= set(ext)):
        raise GlodeError(f"{meta_path}: 'external_word_embeddings' needs 'encoder_dir' and 'sha256'; {MADE_BY}")
    top = hf_folder(meta, Path())
    for part, what in (((top / "config.json").as_posix(), "the encoder config"),
                       ((top / "tokenizer_config.json").as_posix(), "the tokenizer"),
                       ((top / "tokenizer.json").as_posix(), "the fast tokenizer"), (WEIGHTS_FILE, "the trained weights")):
        if not (model_dir / part).is_file():
            raise GlodeError(f"{model_dir}: {part} is missing ({what}, saved with the model); the folder is "
                             f"incomplete: {MADE_BY}, retrain the model")
    return meta


def hf_folder(meta: dict, model_dir: Path) -> Path:
    """Where a model folder keeps its encoder config and tokenizer: its top (format 2) or
    ``encoder/`` (format 1)."""
    return model_dir / "encoder" if meta.get("format_version") == 1 else model_dir


def load_model(model_dir: str | Path, encoder_dir: str | Path | None = None) -> tuple[SpanNERModel, object, dict]:
    """Rebuild a saved model exactly (eval mode). ``encoder_dir`` overrides where frozen
    word embeddings are read from (default: the path recorded at save time)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from glode.encoder import REBUILD, check_hf_folder, max_tokens

    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    config = SpanModelConfig(**meta["config"])
    retrain = f"{MADE_BY}, retrain the model"
    check_hf_folder(model_dir, retrain, weights=(WEIGHTS_FILE,), top=hf_folder(meta, model_dir))
    try:
        enc_config = AutoConfig.from_pretrained(hf_folder(meta, model_dir), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(hf_folder(meta, model_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise GlodeError(f"{model_dir}: its encoder config or tokenizer cannot be loaded "
                         f"({' '.join(str(exc).split())[:300]}); {retrain}") from None
    limit = max_tokens(enc_config)
    if limit is not None and config.max_seq_len > limit:  # trained on short sentences only; a long one would crash
        raise GlodeError(f"{model_dir}: its sequence length {config.max_seq_len} (model.max-seq-len) is more than the "
                         f"{limit} sub-tokens its encoder takes; retrain it with model.max-seq-len <= {limit}")
    encoder = AutoModel.from_config(enc_config)
    model = SpanNERModel(encoder, config)
    state = load_file(str(model_dir / WEIGHTS_FILE))
    ext = meta.get("external_word_embeddings")
    if ext:
        base = Path(encoder_dir) if encoder_dir is not None else Path(os.path.normpath(model_dir / ext["encoder_dir"]))
        if not base.is_dir():
            raise GlodeError(
                f"{model_dir}: its frozen word embeddings come from the encoder folder {base} (recorded as "
                f"{ext['encoder_dir']!r}, relative to the model folder), which does not exist; in the project run the "
                "encoder stage (dvc repro encoder); for a copied model folder pass the encoder folder explicitly "
                "(glode predict --encoder DIR, load_model(folder, encoder_dir=DIR))"
            )
        check_hf_folder(base, REBUILD, tokenizer=False)
        no_loading_bars()
        try:
            base_encoder = AutoModel.from_pretrained(base, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise GlodeError(f"{base}: the encoder cannot be loaded ({' '.join(str(exc).split())[:300]}); {REBUILD}") from None
        emb = base_encoder.get_input_embeddings().weight.detach()
        if tensor_fingerprint(emb) != ext["sha256"]:
            raise GlodeError(
                f"{model_dir}: the word embeddings in {base} differ from the ones this model was trained with; "
                "rebuild the model or point to the encoder folder it was trained on"
            )
        state[WORD_EMB_KEY] = emb
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise GlodeError(f"{model_dir}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    model.freeze_word_embeddings(bool(ext))
    model.eval()
    return model, tokenizer, meta
