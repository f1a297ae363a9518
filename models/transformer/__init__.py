"""Transformer generators over image tokens (GPT, MaskGIT, Transformer-XL, text-to-image) and the ViT encoder.

Importing the package registers ``gpt``, ``transformer-xl``, ``text2image-gpt``, ``maskgit`` and ``vit``.
The generators' arguments are the fields of one frozen config dataclass per model (:mod:`models.transformer.config`),
and their image tokenizers are registered by name (:data:`models.transformer.tokenizers.TOKENIZERS`).
"""

from models.transformer import gpt, maskgit, text2image_gpt, transformer_xl, vit  # noqa: F401  (registration)
