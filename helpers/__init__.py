"""Dreamframe: text-to-image art and frame videos with VQGAN+CLIP and latent diffusion."""

__version__ = "0.1.0"
