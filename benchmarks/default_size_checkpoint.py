"""Write a default-size ACT checkpoint (LeRobot >= 0.4 layout) with dataset-like stats, for the INT8 study.

  # by the real LeRobot (its own venv: torch, torchvision, lerobot==0.4.4; see benchmarks/int8_recipe.md):
  PYTHONPATH=$PWD LEROBOT_PYTHON benchmarks/default_size_checkpoint.py OUT --writer lerobot
  # without LeRobot: the test helper test/lerobot_layout.py writes the same layout (NOT LeRobot-made):
  python benchmarks/default_size_checkpoint.py OUT --writer layout

LeRobot's default ACT (ResNet18, dim 512, 4 encoder / 1 decoder layers, chunk 100, MEAN_STD
everywhere), one 480x640 camera ``observation.images.front``, a 6-joint state and action. Weights
are seeded (:func:`act_policy.core.synthetic.seeded_state_dict`, seed 7, not the demo's 0) — no
trained default-size ACT can be had here. The state/action statistics are SO-101-like, in degrees
(gripper 0-100): means at a working pose and σ of 9-25, unlike the demo's uniformly drawn ones;
images get ImageNet stats as LeRobot's ACT does by default.

With ``--writer lerobot`` the weights are loaded into LeRobot's own ``ACTPolicy`` and saved by its
``save_pretrained`` with processors from ``make_pre_post_processors(cfg, dataset_stats=...)`` —
the ``lerobot-train`` path — and LeRobot's ``predict_action_chunk`` on one synthetic observation
is stored as ``lerobot_chunk0.npz`` beside the checkpoint, so act_policy's reading of it can be
checked. The helpers shared with the parity fixture come from test/fixtures/lerobot_parity/make_fixture.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "test"), str(ROOT / "test" / "fixtures" / "lerobot_parity")]

from act_policy.core.synthetic import (  # noqa: E402
    DEMO_CAMERA,
    demo_spec,
    seeded_stats,
    synthetic_observations,
)

SEED = 7
# shoulder_pan, shoulder_lift, elbow_flex, wrist_flex, wrist_roll, gripper (degrees; gripper 0-100)
MEAN = np.array([2.0, -35.0, 40.0, 70.0, -5.0, 18.0], np.float32)
STD = np.array([14.0, 22.0, 25.0, 12.0, 9.0, 16.0], np.float32)
LOW = np.array([-60.0, -100.0, -20.0, 20.0, -40.0, 0.0], np.float32)
HIGH = np.array([60.0, 20.0, 100.0, 110.0, 30.0, 60.0], np.float32)


def dataset_like(shift: float) -> dict[str, np.ndarray]:
    """Statistics of a vector feature (the state is the action shifted a little: the follower lags)."""
    mean = MEAN + shift
    return {"mean": mean, "std": STD, "min": LOW, "max": HIGH, "q01": mean - 2.0 * STD, "q99": mean + 2.0 * STD,
            "q10": mean - 1.2 * STD, "q90": mean + 1.2 * STD}


def study_stats() -> dict[str, dict[str, np.ndarray]]:
    spec = demo_spec(480, 640)
    stats = seeded_stats(spec, SEED)  # ImageNet stats for the camera
    stats[spec.state.name] = dataset_like(0.5)
    stats[spec.action.name] = dataset_like(0.0)
    return stats


def write_layout(out: Path) -> None:
    import torch
    from lerobot_layout import write_checkpoint

    from act_policy.core.artifacts import PolicyArtifacts
    from act_policy.core.checkpoint import expected_shapes
    from act_policy.core.synthetic import seeded_state_dict

    spec = demo_spec(480, 640)
    stats = study_stats()
    weights = {k: torch.from_numpy(v) for k, v in seeded_state_dict(expected_shapes(spec), SEED).items()}
    artifacts = PolicyArtifacts(spec=spec, weights=weights, action_stats={spec.action.name: stats[spec.action.name]},
                                input_stats={f.name: stats[f.name] for f in spec.inputs})
    write_checkpoint(artifacts, out)


def write_lerobot(out: Path) -> None:
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.utils import prepare_observation_for_inference
    from make_fixture import lean_weights, to_stats_tensors

    spec = demo_spec(480, 640)
    stats = study_stats()
    cfg = ACTConfig(
        input_features={"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(6,)),
                        DEMO_CAMERA: PolicyFeature(type=FeatureType.VISUAL, shape=(3, 480, 640))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(6,))},
        pretrained_backbone_weights=None, device="cpu", push_to_hub=False)
    policy = ACTPolicy(cfg)
    result = policy.load_state_dict({f"model.{k}": torch.from_numpy(v) for k, v in lean_weights(spec, SEED).items()},
                                    strict=False)
    assert not result.unexpected_keys and all(k.startswith("model.vae_encoder") for k in result.missing_keys)
    pre, post = make_pre_post_processors(cfg, dataset_stats=to_stats_tensors(stats))
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    observation = next(iter(synthetic_observations(spec, stats, 1, seed=SEED)))
    policy.eval()
    with torch.inference_mode():
        batch = pre(prepare_observation_for_inference({k: v.copy() for k, v in observation.items()},
                                                      torch.device("cpu")))
        chunk = post(policy.predict_action_chunk(batch))
    np.savez(out / "lerobot_chunk0.npz", chunk=chunk.numpy()[0], **observation)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--writer", choices=("lerobot", "layout"), required=True)
    args = parser.parse_args()
    (write_lerobot if args.writer == "lerobot" else write_layout)(args.out)
    print(f"wrote {args.out} ({'by LeRobot' if args.writer == 'lerobot' else 'test helper layout, NOT LeRobot-made'})")


if __name__ == "__main__":
    main()
