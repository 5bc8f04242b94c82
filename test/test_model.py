"""The lean ACT network: LeRobot's parameter names, and a deployed path equal to the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import tiny_spec

from act_policy.core.backbone import FrozenBatchNorm2d, ResNetBackbone, fold_frozen_batch_norm
from act_policy.core.checkpoint import expected_shapes
from act_policy.core.config import ENV_STATE_KEY, Feature, FeatureType, NormMode
from act_policy.core.errors import CheckpointError
from act_policy.core.model import ACT, sine_position_embedding_2d
from act_policy.core.synthetic import seeded_state_dict


def seeded_model(spec) -> ACT:
    model = ACT(spec)
    weights = seeded_state_dict(expected_shapes(spec), seed=3)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    return model.eval()


def with_cameras(spec, names_and_sizes):
    cams = tuple(Feature(f"observation.images.{n}", FeatureType.VISUAL, (3, h, w), NormMode.MEAN_STD)
                 for n, (h, w) in names_and_sizes)
    return type(spec)(spec.config, (spec.inputs[0], *cams), spec.action)


VARIANTS = {
    "post-norm, 1 camera": tiny_spec(),
    "pre-norm, gelu, 2 decoder layers": tiny_spec(pre_norm=True, feedforward_activation="gelu", n_decoder_layers=2),
    "2 cameras of different sizes": with_cameras(tiny_spec(), [("top", (64, 80)), ("wrist", (48, 64))]),
    "env state only, no camera": type(tiny_spec())(
        tiny_spec().config,
        (tiny_spec().inputs[0], Feature(ENV_STATE_KEY, FeatureType.ENV, (5,), NormMode.IDENTITY)),
        tiny_spec().action),
}


def random_inputs(spec, batch: int = 2):
    g = torch.Generator().manual_seed(0)
    images = [torch.randn(batch, *f.shape, generator=g) for f in spec.cameras]
    state = torch.randn(batch, *spec.state.shape, generator=g)
    env = torch.randn(batch, *spec.env_state.shape, generator=g) if spec.env_state else None
    return images, state, env


@pytest.mark.parametrize("name", VARIANTS)
def test_deployed_forward_equals_step_by_step_reference(name: str) -> None:
    spec = VARIANTS[name]
    model = seeded_model(spec)
    images, state, env = random_inputs(spec)
    with torch.no_grad():
        reference = model.forward_reference(images, state, env)
        model.prepare([tuple(i.shape[-2:]) for i in images])
        deployed = model(images, state, env)
    assert deployed.shape == (2, spec.config.chunk_size, spec.action_dim)
    torch.testing.assert_close(deployed, reference, atol=1e-4, rtol=1e-4)
    assert reference[0].sub(reference[1]).abs().max() > 1e-3, "outputs must depend on the observation"


def test_prepared_model_refuses_other_image_sizes() -> None:
    spec = tiny_spec()
    model = seeded_model(spec).prepare([(64, 80)])
    with pytest.raises(RuntimeError, match=r"prepare\(\) was called for image sizes \(\(64, 80\),\)"):
        model([torch.zeros(1, 3, 32, 32)], torch.zeros(1, 6))


def test_parameter_names_are_lerobots_model_keys() -> None:
    post, pre = expected_shapes(tiny_spec()), expected_shapes(tiny_spec(pre_norm=True))
    d = tiny_spec().config.dim_model
    assert post["encoder_img_feat_input_proj.weight"] == (d, 512, 1, 1)
    assert post["encoder.layers.1.self_attn.in_proj_weight"] == (3 * d, d)
    assert post["decoder.layers.0.multihead_attn.out_proj.bias"] == (d,)
    assert post["backbone.layer4.1.bn2.running_var"] == (512,)
    assert post["backbone.layer2.0.downsample.1.weight"] == (128,)
    assert post["encoder_1d_feature_pos_embed.weight"] == (2, d)  # latent + state
    assert post["decoder_pos_embed.weight"] == (10, d)
    assert "backbone.fc.weight" not in post and not any(k.startswith("vae_encoder") for k in post)
    assert "encoder.norm.weight" not in post and pre["encoder.norm.weight"] == (d,)


def test_sine_embedding_matches_its_definition() -> None:
    h, w, dim = 3, 4, 8
    emb = sine_position_embedding_2d(h, w, dim).reshape(h, w, dim).double()
    half = dim // 2
    for y in range(h):
        for x in range(w):
            for axis, pos, n in ((0, y, h), (1, x, w)):
                for i in range(half):
                    phase = (pos + 1) / (n + 1e-6) * 2 * math.pi / 10000 ** (2 * (i // 2) / half)
                    expected = math.sin(phase) if i % 2 == 0 else math.cos(phase)
                    assert emb[y, x, axis * half + i].item() == pytest.approx(expected, abs=1e-5)


def test_feature_map_size_formula_matches_the_backbone() -> None:
    model = ACT(tiny_spec())
    for size in [(64, 80), (480, 640), (97, 131), (224, 224)]:
        with torch.no_grad():
            out = model.backbone(torch.zeros(1, 3, *size))
        assert model.feature_map_sizes([size]) == [tuple(out.shape[-2:])]


def test_folding_frozen_batch_norm_keeps_the_backbone_output() -> None:
    backbone = ResNetBackbone("resnet18")
    weights = seeded_state_dict({k: tuple(v.shape) for k, v in backbone.state_dict().items()}, seed=5)
    backbone.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = backbone(x)
        fold_frozen_batch_norm(backbone)
        after = backbone(x)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_frozen_batch_norm_uses_eps_1e_5() -> None:
    bn = FrozenBatchNorm2d(1)
    bn.running_var.fill_(0.0)
    out = bn(torch.ones(1, 1, 1, 1))
    assert out.item() == pytest.approx(1 / np.sqrt(1e-5), rel=1e-5)


@pytest.mark.parametrize("backbone,channels", [("resnet34", 512), ("resnet50", 2048)])
def test_other_torchvision_resnets_have_their_output_width(backbone: str, channels: int) -> None:
    assert ResNetBackbone(backbone).out_channels == channels


def test_unsupported_backbone_is_named() -> None:
    with pytest.raises(CheckpointError, match="config: vision_backbone 'vgg16' is not supported"):
        ResNetBackbone("vgg16")
