"""helpers.vqgan_clip.vqgan against taming-transformers' own modules, plus safety, errors and the
cache."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from taming_reference import F16, GUMBEL_F8, Reference, _reference, _save, _transformer_yaml
from test_safeload import Callback, Exploit

from helpers.vqgan_clip import vqgan as vq
from helpers.vqgan_clip.vqgan import load_vqgan, taming_config, write_taming_yaml


def _nearest(z: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour quantisation as the VQGAN+CLIP notebooks write it (for Gumbel models)."""
    flat = z.movedim(1, -1)
    d = flat.pow(2).sum(-1, keepdim=True) + book.pow(2).sum(1) - 2 * flat @ book.T
    return book[d.argmin(-1)].movedim(-1, 1)


def _assert_equivalent(model: vq.VQGAN, ref: Reference, gumbel: bool) -> None:
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        z_ref = ref.quant_conv(ref.encoder(x))
        if gumbel:
            zq_ref = _nearest(z_ref, ref.quantize.embed.weight)
            logits_ref = ref.quantize.proj(z_ref)
        else:
            zq_ref = ref.quantize(z_ref)[0]
        img_ref = ref.decoder(ref.post_quant_conv(zq_ref))
        z = model.encode(x)
        z_q = model.quantize(z_ref)
        img = model.decode(zq_ref)
    torch.testing.assert_close(z, z_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(z_q, zq_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(img, img_ref, atol=1e-4, rtol=1e-4)
    if gumbel:
        torch.testing.assert_close(model.gumbel_logits(z_ref), logits_ref, atol=1e-5, rtol=1e-5)
    assert z.shape[-1] == 64 // model.factor


def test_f16_vqmodel_matches_taming(tmp_path):
    ref = _reference(F16, gumbel=False)
    model = load_vqgan(_save(tmp_path, ref, F16))
    _assert_equivalent(model, ref, gumbel=False)
    assert (model.factor, model.e_dim, model.n_embed) == (16, 16, 64)
    assert not model.gumbel
    torch.testing.assert_close(model.codebook, ref.quantize.embedding.weight)


def test_gumbel_f8_matches_taming_nearest_neighbour(tmp_path):
    ref = _reference(GUMBEL_F8, gumbel=True)
    model = load_vqgan(_save(tmp_path, ref, GUMBEL_F8, gumbel=True))
    _assert_equivalent(model, ref, gumbel=True)
    assert (model.factor, model.e_dim, model.n_embed) == (8, 32, 128)
    assert model.gumbel
    torch.testing.assert_close(model.codebook, ref.quantize.embed.weight)


def test_transformer_checkpoint_loads_its_first_stage(tmp_path):
    ref = _reference(F16, gumbel=False, seed=3)
    ckpt = _save(tmp_path, ref, F16, prefix="first_stage_model.", yaml=_transformer_yaml(F16))
    _assert_equivalent(load_vqgan(ckpt), ref, gumbel=False)


def _noiseless_gumbel_softmax(logits, tau=1.0, hard=False, dim=-1):
    """F.gumbel_softmax(hard=True)'s value without the Gumbel noise: the argmax as a one-hot."""
    return F.one_hot(logits.argmax(dim), logits.shape[dim]).movedim(-1, dim).to(logits.dtype)


@pytest.mark.parametrize(("cfg", "gumbel"), [(F16, False), (GUMBEL_F8, True)])
def test_encode_quantized_gives_tamings_codes(tmp_path, monkeypatch, cfg, gumbel):
    ref = _reference(cfg, gumbel=gumbel, seed=4)
    model = load_vqgan(_save(tmp_path, ref, cfg, gumbel=gumbel))
    if gumbel:  # taming samples Gumbel noise even in eval mode; the model's choice is without
        monkeypatch.setattr(F, "gumbel_softmax", _noiseless_gumbel_softmax)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        h = ref.quant_conv(ref.encoder(x))
        zq_ref, _, (_, _, codes_ref) = ref.quantize(h)
        z_q, codes = model.encode_quantized(x), model.encode_codes(x)
    torch.testing.assert_close(z_q, zq_ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(codes.flatten(), codes_ref.flatten())
    if gumbel:  # the premise: the nearest codebook vector is another code somewhere
        assert not torch.equal(codes, model.indices(h))


def test_quantize_passes_gradient_straight_through(tmp_path):
    model = load_vqgan(_save(tmp_path, _reference(F16, False), F16))
    z = torch.randn(1, 16, 2, 2, requires_grad=True)
    model.quantize(z).sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))


@pytest.mark.parametrize(("cfg", "gumbel"), [(F16, False), (GUMBEL_F8, True)])
def test_reverse_mapping_round_trips_the_taming_layout(tmp_path, cfg, gumbel):
    ref = _reference(cfg, gumbel=gumbel)
    model = load_vqgan(_save(tmp_path, ref, cfg, gumbel=gumbel))
    back = vq.to_taming_state_dict(model)
    expected = ref.state_dict()
    assert back.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(back[key], value, msg=key)


def test_truncated_checkpoint_is_named_in_the_error(tmp_path):
    ckpt = _save(tmp_path, _reference(F16, False), F16)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated or corrupt checkpoint: .*model\.ckpt"):
        load_vqgan(ckpt)


@pytest.mark.parametrize(("field", "value", "piece"), [
    ("n_embed", 32, "quantize.embedding.weight"),
    ("ch", 64, "encoder.conv_in.weight"),
    ("num_res_blocks", 1, "encoder.down.0.block.1"),
])
def test_yaml_that_does_not_match_checkpoint_is_rejected(tmp_path, field, value, piece):
    wrong = taming_config(**{**F16, field: value})
    ckpt = _save(tmp_path, _reference(F16, False), F16, yaml=wrong)
    with pytest.raises(ValueError, match="does not match") as err:
        load_vqgan(ckpt)
    assert str(ckpt) in str(err.value)
    assert piece in str(err.value)


def test_unknown_target_is_rejected(tmp_path):
    config = taming_config(**F16)
    config["model"]["target"] = "taming.models.dummy_cond_stage.DummyCondStage"
    ckpt = _save(tmp_path, _reference(F16, False), F16, yaml=config)
    with pytest.raises(ValueError, match=r"DummyCondStage.*not a VQGAN"):
        load_vqgan(ckpt)


def test_missing_yaml_is_reported(tmp_path):
    ckpt = _save(tmp_path, _reference(F16, False), F16)
    ckpt.with_suffix(".yaml").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.yaml"):
        load_vqgan(ckpt)


def test_pickled_code_never_runs_and_weights_still_load(tmp_path):
    ref = _reference(F16, gumbel=False)
    ckpt = _save(tmp_path, ref, F16)
    marker = tmp_path / "pwned"
    payload = torch.load(ckpt, weights_only=True)
    payload["callbacks"] = {"ModelCheckpoint": Callback(), "evil": Exploit(marker)}
    torch.save(payload, ckpt)
    model = load_vqgan(ckpt)
    assert not marker.exists()
    _assert_equivalent(model, ref, gumbel=False)


def test_cache_is_used_instead_of_the_pickle(tmp_path, monkeypatch):
    ref = _reference(F16, gumbel=False)
    ckpt = _save(tmp_path, ref, F16)
    load_vqgan(ckpt)
    assert ckpt.with_suffix(".safetensors").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called although the cache is valid")

    monkeypatch.setattr(torch, "load", refuse)
    _assert_equivalent(load_vqgan(ckpt), ref, gumbel=False)
    ckpt.unlink()
    ckpt.with_suffix(".yaml").unlink()
    _assert_equivalent(load_vqgan(ckpt), ref, gumbel=False)


def test_cache_is_rebuilt_when_checkpoint_changes(tmp_path):
    first = _reference(F16, gumbel=False, seed=0)
    ckpt = _save(tmp_path, first, F16)
    load_vqgan(ckpt)
    second = _reference(F16, gumbel=False, seed=5)
    _save(tmp_path, second, F16)
    stat = ckpt.stat()
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    _assert_equivalent(load_vqgan(ckpt), second, gumbel=False)


def test_cached_safetensors_loads_by_its_own_path(tmp_path):
    ref = _reference(GUMBEL_F8, gumbel=True)
    ckpt = _save(tmp_path, ref, GUMBEL_F8, gumbel=True)
    load_vqgan(ckpt)
    ckpt.unlink()
    _assert_equivalent(load_vqgan(ckpt.with_suffix(".safetensors")), ref, gumbel=True)


def test_checkpoint_without_vqgan_weights_is_rejected(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"transformer.tok_emb.weight": torch.randn(4, 4)}}, ckpt)
    write_taming_yaml(ckpt.with_suffix(".yaml"), taming_config(**F16))
    with pytest.raises(ValueError, match=r"no VQGAN weights .*encoder"):
        load_vqgan(ckpt)


def test_corrupt_cache_falls_back_to_the_checkpoint(tmp_path):
    ref = _reference(F16, gumbel=False)
    ckpt = _save(tmp_path, ref, F16)
    load_vqgan(ckpt)
    ckpt.with_suffix(".safetensors").write_bytes(b"not safetensors")
    _assert_equivalent(load_vqgan(ckpt), ref, gumbel=False)


def test_loaded_model_is_frozen_and_in_eval_mode(tmp_path):
    model = load_vqgan(_save(tmp_path, _reference(F16, False), F16))
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())

