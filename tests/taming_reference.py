"""taming-transformers' VQModel / GumbelVQ as references for helpers.vqgan_clip.vqgan: scaled-down
configs, the reference models built from taming's own modules, and taming-style checkpoints of
them."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from helpers.vqgan_clip import vqgan as vq
from helpers.vqgan_clip.vqgan import taming_config, write_taming_yaml

# Real configs with channels scaled down; structure (levels, attention placement, blocks) kept.
F16 = {"ch": 32, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16],
       "z_channels": 32, "embed_dim": 16, "n_embed": 64}
GUMBEL_F8 = {"ch": 32, "ch_mult": [1, 1, 2, 4], "num_res_blocks": 2, "attn_resolutions": [32],
             "z_channels": 32, "embed_dim": 32, "n_embed": 128}


class Reference(nn.Module):
    """taming's VQModel / GumbelVQ, assembled from taming's modules (no pytorch-lightning)."""

    def __init__(self, cfg: dict, gumbel: bool):
        super().__init__()
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.vqvae.quantize import GumbelQuantize, VectorQuantizer2

        dd = taming_config(**cfg, gumbel=gumbel)["model"]["params"]["ddconfig"]
        z, e, n = cfg["z_channels"], cfg["embed_dim"], cfg["n_embed"]
        self.encoder, self.decoder = Encoder(**dd), Decoder(**dd)
        if gumbel:
            self.quantize = GumbelQuantize(z, e, n_embed=n)
        else:
            self.quantize = VectorQuantizer2(n, e, beta=0.25)
        self.quant_conv = nn.Conv2d(z, e, 1)
        self.post_quant_conv = nn.Conv2d(e, z, 1)
        codebook = self.quantize.embed if gumbel else self.quantize.embedding
        nn.init.normal_(codebook.weight)  # spread out, so nearest-neighbour is not all one code


def _reference(cfg: dict, gumbel: bool, seed: int = 0) -> Reference:
    torch.manual_seed(seed)
    return Reference(cfg, gumbel).eval()


def _save(folder: Path, ref: Reference, cfg: dict, *, gumbel=False, prefix="", yaml=None) -> Path:
    """Save a reference as a lightning-like taming checkpoint with loss / transformer extras."""
    sd = {prefix + k: v for k, v in ref.state_dict().items()}
    sd[prefix + "loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4)
    sd[prefix + "loss.perceptual_loss.net.slice1.0.weight"] = torch.randn(8, 3, 3, 3)
    if prefix:
        sd["transformer.tok_emb.weight"] = torch.randn(cfg["n_embed"], 8)
        sd["cond_stage_model.encoder.conv_in.weight"] = torch.randn(8, 3, 3, 3)
    ckpt = folder / "model.ckpt"
    torch.save({"state_dict": sd, "global_step": 1, "epoch": 0}, ckpt)
    config = yaml or taming_config(**cfg, gumbel=gumbel)
    write_taming_yaml(ckpt.with_suffix(".yaml"), config)
    return ckpt


def _transformer_yaml(cfg: dict) -> dict:
    first = taming_config(**cfg)["model"]
    return {"model": {"target": vq.TRANSFORMER_TARGET, "params": {
        "cond_stage_key": "segmentation",
        "transformer_config": {"target": "taming.modules.transformer.mingpt.GPT",
                               "params": {"vocab_size": cfg["n_embed"], "block_size": 16}},
        "first_stage_config": first,
        "cond_stage_config": first}}}
