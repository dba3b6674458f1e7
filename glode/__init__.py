"""glode: cross-lingual NER by self-training with global-local denoised pseudo labels."""

__version__ = "0.1.0"
