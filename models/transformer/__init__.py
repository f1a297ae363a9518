"""Transformer generators over image tokens (GPT, MaskGIT, Transformer-XL, text-to-image) and the ViT encoder.

Importing the package registers ``gpt``, ``transformer-xl``, ``text2image-gpt``, ``maskgit`` and ``vit``.
"""

from models.transformer import gpt, maskgit, text2image_gpt, transformer_xl, vit  # noqa: F401  (registration)
