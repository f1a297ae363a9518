"""Transformer generators over image tokens (GPT, MaskGIT, Transformer-XL, text-to-image) and the ViT encoder."""
