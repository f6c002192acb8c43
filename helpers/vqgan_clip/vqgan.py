"""Taming-transformers VQGAN checkpoints as `diffusers.VQModel`s.

A taming checkpoint (`.ckpt`, a pickle) and its `.yaml` become a `VQGAN`: encode, quantize, decode.
VQModel (f16 1024 / 16384), GumbelVQ (f8 8192) and the first stage of Net2NetTransformer
checkpoints (coco, faceshq, sflckr) are understood. The pickle never runs code (`safeload`), and
the converted weights are cached next to the checkpoint as `<stem>.safetensors`, so it is read once.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from helpers.files import atomic_replace, atomic_write_text, load_json
from helpers.safeload import safe_torch_load

VQ_TARGET = "taming.models.vqgan.VQModel"
GUMBEL_TARGET = "taming.models.vqgan.GumbelVQ"
TRANSFORMER_TARGET = "taming.models.cond_transformer.Net2NetTransformer"
_KINDS = {VQ_TARGET: "vq", GUMBEL_TARGET: "gumbel"}
_CACHE_FORMAT = "dreamframe-vqgan/1"
_MODEL_PREFIXES = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
_IGNORED_KEYS = {"quantize.used"}  # index remapping buffer: z_q does not depend on it


class VQGAN(nn.Module):
    """A taming VQGAN held as a diffusers VQModel; images are NCHW in [-1, 1]."""

    def __init__(self, model: nn.Module, gumbel_proj: nn.Conv2d | None = None):
        super().__init__()
        self.model = model
        self.gumbel_proj = gumbel_proj  # GumbelQuantize.proj: z -> n_embed logits (Gumbel only)
        self.checkpointing = False  # recompute decoder blocks in backward: far less memory

    @property
    def gumbel(self) -> bool:
        """True for a GumbelVQ model."""
        return self.gumbel_proj is not None

    @property
    def codebook(self) -> torch.Tensor:
        """The codebook, n_embed x e_dim."""
        return self.model.quantize.embedding.weight

    @property
    def n_embed(self) -> int:
        """Number of codebook vectors."""
        return self.codebook.shape[0]

    @property
    def e_dim(self) -> int:
        """Dimension of a codebook vector (channels of z)."""
        return self.codebook.shape[1]

    @property
    def factor(self) -> int:
        """Spatial downsampling from image to latent (16 or 8 for the released models)."""
        return factor_of(len(self.model.config.block_out_channels))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] -> z before quantisation (encoder, then quant_conv)."""
        return self.model.encode(x).latents

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook vector at each position of z, shape (B, H, W)."""
        b, c, h, w = z.shape
        flat = z.movedim(1, -1).reshape(-1, c)
        book = self.codebook
        dist = flat.pow(2).sum(1, keepdim=True) + book.pow(2).sum(1) - 2 * flat @ book.T
        return dist.argmin(1).view(b, h, w)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest codebook vector per position; the gradient passes straight through to z.

        For Gumbel models too: as the VQGAN+CLIP notebooks do, the nearest vector of
        `quantize.embed.weight`, not taming's sampled (random even in eval mode) Gumbel softmax.
        """
        z_q = F.embedding(self.indices(z), self.codebook).movedim(-1, 1)
        return z_q + (z - z.detach())  # exactly z_q; z's gradient

    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] -> the encoder's code at each latent position, shape (B, H, W).

        The model's own choice, as taming's `encode`: the nearest codebook vector for a VQ model;
        for a Gumbel model the argmax of GumbelQuantize's logits (its hard Gumbel softmax
        without the sampling noise), not the nearest vector, which may be another code.
        """
        z = self.encode(x)
        return self.gumbel_logits(z).argmax(1) if self.gumbel else self.indices(z)

    def encode_quantized(self, x: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] -> the codebook vectors of its codes (B, e_dim, H, W): taming's
        `encode(x)[0]`, where the VQGAN+CLIP notebooks start from an init image."""
        return F.embedding(self.encode_codes(x), self.codebook).movedim(-1, 1)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Quantised latent -> image, about [-1, 1] (post_quant_conv, then decoder; not clamped)."""
        if self.checkpointing and torch.is_grad_enabled():
            return self._decode_checkpointed(z_q)
        return self.model.decode(z_q, force_not_quantize=True).sample

    def _decode_checkpointed(self, z_q: torch.Tensor) -> torch.Tensor:
        """The same decode, keeping only block inputs for the backward pass (Chen et al. 2016)."""
        from torch.utils.checkpoint import checkpoint

        dec = self.model.decoder
        h = dec.conv_in(self.model.post_quant_conv(z_q))
        for block in (dec.mid_block, *dec.up_blocks):
            h = checkpoint(block, h, None, use_reentrant=False)
        return dec.conv_out(dec.conv_act(dec.conv_norm_out(h)))

    def gumbel_logits(self, z: torch.Tensor) -> torch.Tensor:
        """GumbelQuantize's logits over the codebook at each position of z (Gumbel models only)."""
        if self.gumbel_proj is None:
            raise ValueError("gumbel_logits: this VQGAN is not a GumbelVQ model")
        return self.gumbel_proj(z)


# ----------------------------------------------------------------------------- configs


def vqmodel_config(ddconfig: Mapping[str, Any], embed_dim: int, n_embed: int) -> dict[str, Any]:
    """diffusers VQModel keyword arguments for a taming `ddconfig` plus embed_dim / n_embed."""
    for key in ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels", "resolution"):
        if key not in ddconfig:
            raise ValueError(f"ddconfig: missing {key!r}")
    if ddconfig.get("double_z", False):
        raise ValueError("ddconfig.double_z: must be false for a VQGAN, got true")
    if not ddconfig.get("resamp_with_conv", True):
        raise ValueError("ddconfig.resamp_with_conv: false is not supported")
    ch, mult = int(ddconfig["ch"]), [int(m) for m in ddconfig["ch_mult"]]
    if not mult or mult[0] != 1:
        raise ValueError(f"ddconfig.ch_mult: must start with 1, got {mult}")
    attn = {int(r) for r in ddconfig["attn_resolutions"]}
    res = int(ddconfig["resolution"])
    has_attn = [res // 2**i in attn for i in range(len(mult))]  # taming: attn per level
    down = ["AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in has_attn]
    up = ["AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in has_attn]
    return {
        "in_channels": int(ddconfig.get("in_channels", 3)),
        "out_channels": int(ddconfig.get("out_ch", 3)),
        "down_block_types": down,
        "up_block_types": up[::-1],  # diffusers counts decoder levels from the lowest resolution
        "block_out_channels": [ch * m for m in mult],
        "layers_per_block": int(ddconfig["num_res_blocks"]),
        "latent_channels": int(ddconfig["z_channels"]),
        "sample_size": res,
        "num_vq_embeddings": int(n_embed),
        "vq_embed_dim": int(embed_dim),
        "norm_num_groups": 32,  # taming's Normalize is GroupNorm(32)
    }


def taming_config(*, ch: int, ch_mult: list[int], num_res_blocks: int,
                  attn_resolutions: list[int], z_channels: int, embed_dim: int, n_embed: int,
                  resolution: int = 256, gumbel: bool = False) -> dict[str, Any]:
    """A taming-transformers yaml config (as a dict) for a VQModel or, with gumbel, a GumbelVQ."""
    ddconfig = {"double_z": False, "z_channels": z_channels, "resolution": resolution,
                "in_channels": 3, "out_ch": 3, "ch": ch, "ch_mult": list(ch_mult),
                "num_res_blocks": num_res_blocks, "attn_resolutions": list(attn_resolutions),
                "dropout": 0.0}
    params: dict[str, Any] = {"embed_dim": embed_dim, "n_embed": n_embed, "ddconfig": ddconfig,
                              "lossconfig": {"target": "taming.modules.losses.DummyLoss"}}
    if gumbel:
        params["kl_weight"] = 1.0e-08
        params["temperature_scheduler_config"] = {
            "target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler",
            "params": {"warm_up_steps": 0, "max_decay_steps": 1000001, "lr_start": 0.9,
                       "lr_max": 0.9, "lr_min": 1.0e-06}}
    target = GUMBEL_TARGET if gumbel else VQ_TARGET
    return {"model": {"base_learning_rate": 4.5e-06, "target": target, "params": params}}


def write_taming_yaml(path: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    """Write a taming config dict as yaml, atomically."""
    import yaml

    return atomic_write_text(path, yaml.safe_dump(dict(config), sort_keys=False))


def _read_yaml(path: Path) -> tuple[str, Mapping[str, Any], str]:
    """(kind, params of the VQ model, state-dict prefix) from a taming yaml."""
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        model = cfg["model"]
        target, params = model["target"], model["params"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a taming-transformers config ({err!r})") from err
    prefix = ""
    if target == TRANSFORMER_TARGET:
        first = params.get("first_stage_config") or {}
        target, params, prefix = first.get("target"), first.get("params"), "first_stage_model."
    if target not in _KINDS:
        expected = ", ".join([*_KINDS, TRANSFORMER_TARGET])
        raise ValueError(f"{path}: model target {target!r} is not a VQGAN; expected one of "
                         f"{expected}")
    for key in ("embed_dim", "n_embed", "ddconfig"):
        if key not in (params or {}):
            raise ValueError(f"{path}: {prefix or 'model.'}params lacks {key!r}")
    return _KINDS[target], params, prefix


# ----------------------------------------------------------------------------- key mapping

# diffusers name piece -> taming name piece, applied in order (mid block pieces first).
_RENAMES = (
    ("mid_block.resnets.0.", "mid.block_1."),
    ("mid_block.resnets.1.", "mid.block_2."),
    ("mid_block.attentions.0.", "mid.attn_1."),
    ("encoder.down_blocks.", "encoder.down."),
    (".resnets.", ".block."),
    (".attentions.", ".attn."),
    (".downsamplers.0.", ".downsample."),
    (".upsamplers.0.", ".upsample."),
    ("conv_norm_out.", "norm_out."),
    (".conv_shortcut.", ".nin_shortcut."),
    (".group_norm.", ".norm."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    (".to_out.0.", ".proj_out."),
)
_GUMBEL_RENAMES = (("quantize.embedding.", "quantize.embed."), ("gumbel_proj.", "quantize.proj."))
_ATTN_LINEAR = re.compile(r"\.(q|k|v|proj_out)\.weight$")


def taming_key(key: str, n_levels: int, gumbel: bool = False) -> str:
    """The taming-transformers name of a VQGAN / VQModel state-dict key (the one mapping table)."""
    key = key.removeprefix("model.")
    key = re.sub(r"^decoder\.up_blocks\.(\d+)\.",
                 lambda m: f"decoder.up.{n_levels - 1 - int(m[1])}.", key)
    for old, new in _RENAMES + (_GUMBEL_RENAMES if gumbel else ()):
        key = key.replace(old, new)
    return key


def to_taming_state_dict(vqgan: nn.Module) -> dict[str, torch.Tensor]:
    """A VQGAN's (or a plain diffusers VQModel's) weights in taming-transformers' key layout."""
    vqgan = vqgan if isinstance(vqgan, VQGAN) else VQGAN(vqgan)
    n_levels = len(vqgan.model.config.block_out_channels)
    out = {}
    for key, value in vqgan.state_dict().items():
        name = taming_key(key, n_levels, vqgan.gumbel)
        # taming's attention projections are 1x1 convolutions, diffusers' are linear layers
        out[name] = value[:, :, None, None] if _ATTN_LINEAR.search(name) else value
    return {k: v.detach().clone() for k, v in out.items()}


def _mismatch(where: str, what: str, keys: list[str]) -> ValueError:
    shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
    return ValueError(f"{where}: {what} {len(keys)} weights: {shown}")


def _from_taming(sd: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor],
                 n_levels: int, gumbel: bool, where: str) -> dict[str, torch.Tensor]:
    """Rename and reshape taming weights onto the template's keys and shapes, checking both."""
    table = {key: taming_key(key, n_levels, gumbel) for key in template}
    wanted = set(table.values())
    missing = [t for t in table.values() if t not in sd]
    extra = [k for k in sd if k.startswith(_MODEL_PREFIXES) and k not in wanted
             and k not in _IGNORED_KEYS]
    if missing:
        raise _mismatch(where, "the checkpoint lacks", missing)
    if extra:
        raise _mismatch(where, "the yaml's config has no place for", extra)
    out = {}
    for key, name in table.items():
        src, want = sd[name], tuple(template[key].shape)
        if tuple(src.shape) != want and tuple(src.shape) != (*want, 1, 1):
            raise ValueError(f"{where}: {name} has shape {tuple(src.shape)} in the checkpoint, "
                             f"the yaml's config expects {want}")
        out[key] = src.reshape(want).float().contiguous()
    return out


def _empty_vqgan(vq_config: Mapping[str, Any], gumbel: bool) -> VQGAN:
    """A VQGAN with weights on the meta device (no memory, no random init), to be assigned."""
    from diffusers import VQModel

    with torch.device("meta"):
        model = VQModel(**vq_config)
        proj = None
        if gumbel:
            proj = nn.Conv2d(vq_config["latent_channels"], vq_config["num_vq_embeddings"], 1)
    return VQGAN(model, proj)


# ----------------------------------------------------------------------------- loading


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's state_dict (a lightning dict or a bare state dict)."""
    obj = safe_torch_load(path)
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping):
        raise ValueError(f"{path}: expected a taming checkpoint (a dict with a state_dict), "
                         f"found {type(obj).__name__}")
    return {k: v for k, v in sd.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _convert(ckpt: Path, yaml_path: Path) -> tuple[VQGAN, dict[str, Any]]:
    """Read a taming checkpoint + yaml into a VQGAN; also return the cache metadata."""
    if not yaml_path.is_file():
        raise FileNotFoundError(f"{ckpt}: its taming config {yaml_path} does not exist")
    kind, params, prefix = _read_yaml(yaml_path)
    where = f"{ckpt} does not match {yaml_path}"
    try:
        vq_config = vqmodel_config(params["ddconfig"], params["embed_dim"], params["n_embed"])
    except (ValueError, TypeError) as err:
        raise ValueError(f"{yaml_path}: {err}") from err
    if kind == "gumbel" and vq_config["latent_channels"] != vq_config["vq_embed_dim"]:
        raise ValueError(f"{yaml_path}: a GumbelVQ needs z_channels == embed_dim, got "
                         f"{vq_config['latent_channels']} and {vq_config['vq_embed_dim']}")
    full = _state_dict(ckpt)
    sd = {k.removeprefix(prefix): v for k, v in full.items() if k.startswith(prefix)}
    if not any(k.startswith("encoder.") for k in sd):
        raise ValueError(f"{ckpt}: no VQGAN weights (no '{prefix}encoder.*' keys) in the "
                         f"checkpoint that {yaml_path} describes")
    vqgan = _empty_vqgan(vq_config, kind == "gumbel")
    weights = _from_taming(sd, vqgan.state_dict(), len(vq_config["block_out_channels"]),
                           kind == "gumbel", where)
    vqgan.load_state_dict(weights, assign=True)
    return vqgan, {"kind": kind, "vq_config": vq_config}


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _load_cache(cache: Path, sources: Mapping[str, list[int] | None]) -> VQGAN | None:
    """The cached VQGAN, or None when absent, unreadable or older than its sources."""
    from safetensors import safe_open

    try:
        with safe_open(str(cache), framework="pt") as f:
            meta = load_json((f.metadata() or {}).get("dreamframe", "{}"), str(cache), dict)
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception:
        return None
    if meta.get("format") != _CACHE_FORMAT:
        return None
    for name, stat in sources.items():  # a deleted source does not invalidate; a changed one does
        if stat is not None and meta.get("sources", {}).get(name) != stat:
            return None
    try:
        vqgan = _empty_vqgan(meta["vq_config"], meta["kind"] == "gumbel")
        vqgan.load_state_dict(tensors, assign=True)
    except Exception:
        return None
    return vqgan


def _write_cache(cache: Path, vqgan: VQGAN, meta: dict[str, Any]) -> None:
    """Save converted weights + metadata as safetensors, atomically; warn if it cannot."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in vqgan.state_dict().items()}
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=f".{cache.name}.", suffix=".tmp")
        os.close(fd)
        save_file(tensors, tmp, metadata={"dreamframe": json.dumps(meta)})
        atomic_replace(tmp, cache)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"could not cache converted VQGAN at {cache}: {err}", stacklevel=3)


def config_path(ckpt: str | os.PathLike) -> Path:
    """The taming yaml that goes with a checkpoint: same name, `.yaml`."""
    return Path(ckpt).with_suffix(".yaml")


def factor_of(levels: int) -> int:
    """Pixels per latent token of a VQGAN whose encoder has `levels` resolution levels."""
    return 2 ** (levels - 1)


def checkpoint_in(path: Path) -> Path:
    """A VQGAN's checkpoint: a folder's `model.ckpt` (the catalogue's layout), else `path`."""
    return path / "model.ckpt" if path.is_dir() else path


def read_factor(ckpt: str | os.PathLike) -> int:
    """Pixels per latent token of a VQGAN, read from its yaml (or a converted .safetensors's
    metadata) without loading weights; `ValueError` naming the file when it cannot be read."""
    ckpt = Path(ckpt)
    if ckpt.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(ckpt), framework="pt") as f:
                meta = load_json((f.metadata() or {}).get("dreamframe", "{}"), str(ckpt))
            return factor_of(len(meta["vq_config"]["block_out_channels"]))
        except Exception:
            raise ValueError(f"vqgan: {ckpt} is not a VQGAN converted by Dreamframe") from None
    yaml_path = config_path(ckpt)
    if not yaml_path.is_file():
        raise ValueError(f"vqgan: the taming config {yaml_path} (beside the checkpoint) does "
                         "not exist; put the model's .yaml next to its .ckpt")
    _kind, params, _prefix = _read_yaml(yaml_path)
    try:
        return factor_of(len(params["ddconfig"]["ch_mult"]))
    except (KeyError, TypeError):
        raise ValueError(f"vqgan: {yaml_path} has no ddconfig.ch_mult") from None


def load_vqgan(ckpt: str | os.PathLike, config: str | os.PathLike | None = None,
               device: str | torch.device = "cpu") -> VQGAN:
    """Load a taming VQGAN (.ckpt + .yaml, or its cached .safetensors), frozen, in eval mode."""
    ckpt = Path(ckpt)
    yaml_path = Path(config) if config is not None else config_path(ckpt)
    cache = ckpt.with_suffix(".safetensors")
    sources = {"ckpt": _stat(ckpt), "yaml": _stat(yaml_path)}
    if ckpt.suffix == ".safetensors":
        sources = {}
    vqgan = _load_cache(cache, sources) if cache.is_file() else None
    if vqgan is None:
        if not ckpt.is_file():
            raise FileNotFoundError(f"VQGAN checkpoint not found: {ckpt}")
        if ckpt.suffix == ".safetensors":
            raise ValueError(f"{ckpt}: not a VQGAN converted by Dreamframe (no readable metadata)")
        vqgan, meta = _convert(ckpt, yaml_path)
        meta.update(format=_CACHE_FORMAT, sources=sources)
        _write_cache(cache, vqgan, meta)
    return vqgan.to(device).eval().requires_grad_(False)


__all__ = ["VQGAN", "checkpoint_in", "config_path", "factor_of", "load_vqgan", "read_factor",
           "safe_torch_load", "taming_config", "taming_key", "to_taming_state_dict",
           "vqmodel_config", "write_taming_yaml"]
