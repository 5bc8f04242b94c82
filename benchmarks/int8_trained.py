"""Train a seeded default-size ACT on a learnable synthetic task, to study INT8 error on *trained* weights.

Every INT8 number of rounds 1-5 (benchmarks/int8_recipe.md) was measured on seeded, untrained weights,
and no trained ACT checkpoint can be had on this machine (no network but PyPI). This script makes one:
the task is the synthetic scenes' own future — from one camera frame and the state at time t, predict
the chunk of the next ``chunk_size`` states at the policy's fps (in normalized units the state of the
scenes is ``sin(t + j)`` for joint j, so the target step k is ``sin(t + k/fps + j)``). The frame shows
an object and an arm link that move with t, so the task is learnable from either input.

Training is LeRobot ACT's recipe without the VAE (the deployed network never runs the VAE encoder; its
latent is zero): L1 loss on normalized actions, AdamW with weight decay 1e-4, a lower learning rate for
the ResNet backbone, gradient norm clipped at 10, frozen batch norms. It can run at a smaller image size
than the policy's (the network takes any size: positions are computed from it) and then at full size.

  # the 96x128 demo (seed 0), 2,000 steps of 8 scenes (~16 min with 2 threads on the 2-core x86 VM):
  python benchmarks/int8_trained.py /tmp/trained_demo96 --init demo:96x128 --steps 2000
  # a bundle's policy (e.g. exported from the LeRobot-made checkpoint), first at 96x128 then at full size:
  python benchmarks/int8_trained.py /tmp/trained_lr480 --init BUNDLE --steps 1500 --train-size 96x128 \
      --full-size-steps 120

The output is a bundle (``act-policy export``'s layout) to give to ``act-policy quantize``.
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.config import PolicySpec
from act_policy.core.model import ACT
from act_policy.core.synthetic import demo_artifacts, demo_spec, synthetic_frame
from act_policy.export import export_bundle, load_bundle

T_RANGE = 2 * np.pi * 1.2  # scene times drawn from [0, T_RANGE): every phase, with some overlap


def task_vectors(spec: PolicySpec, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalized state (S,) of the synthetic scenes at time ``t`` s, and the target (chunk, A): their next states.

    :func:`act_policy.core.synthetic.synthetic_observations` moves joint j as ``mean + std·sin(t + j)``, so
    normalized the state is ``sin(t + j)`` and chunk step k (k = 1..chunk_size) is ``sin(t + k/fps + j)``.
    """
    ahead = np.arange(1, spec.config.chunk_size + 1, dtype=np.float32)[:, None] / spec.fps
    state = np.sin(t + np.arange(spec.state.shape[0], dtype=np.float32))
    return state, np.sin(t + ahead + np.arange(spec.action_dim, dtype=np.float32)[None])


def task_batch(artifacts: PolicyArtifacts, size: tuple[int, int], n: int, rng: np.random.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` random scenes: normalized images (n, 3, H, W) and state (n, S), target chunks (n, chunk, A).

    Half of the frames use the camera's own noise seed (as calibration and held-out scenes do), half a
    random one, so the network cannot tie its output to one noise pattern.
    """
    spec = artifacts.spec
    (camera,) = spec.cameras  # the study's policies have one camera
    norm = artifacts.input_normalizer()
    camera_seed = zlib.crc32(camera.name.encode()) % 997  # synthetic_observations' seed for this camera
    images, states, targets = [], [], []
    for t in rng.uniform(0.0, T_RANGE, n):
        seed = camera_seed if rng.random() < 0.5 else int(rng.integers(0, 10**6))
        images.append(norm.image_to_input(camera.name, synthetic_frame(*size, float(t), seed))[0])
        state, target = task_vectors(spec, float(t))
        states.append(state)
        targets.append(target)
    return tuple(torch.from_numpy(np.asarray(x, np.float32)) for x in (images, states, targets))


def train_steps(model: ACT, artifacts: PolicyArtifacts, size: tuple[int, int], steps: int, batch: int,
                lr: float, lr_backbone: float, rng: np.random.Generator) -> Iterator[tuple[int, float]]:
    """Train ``model`` in place at image ``size``; yields (step, L1 loss in normalized units) after each step."""
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    optimizer = torch.optim.AdamW([{"params": rest, "lr": lr}, {"params": backbone, "lr": lr_backbone}],
                                  weight_decay=1e-4)
    model.eval()  # frozen batch norms (LeRobot's ResNet uses FrozenBatchNorm2d); ACT here has no dropout
    for step in range(1, steps + 1):
        images, state, target = task_batch(artifacts, size, batch, rng)
        loss = (model.forward_reference([images], state) - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        yield step, loss.item()


def initial_artifacts(init: str) -> PolicyArtifacts:
    """``demo:HxW`` (the seeded demo at that size) or a bundle folder."""
    if init.startswith("demo:"):
        height, width = (int(v) for v in init.removeprefix("demo:").split("x"))
        return demo_artifacts(demo_spec(height, width))
    return load_bundle(init)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="bundle folder to write")
    parser.add_argument("--init", required=True, help="demo:HxW or a bundle folder")
    parser.add_argument("--steps", type=int, default=2000, help="steps at --train-size")
    parser.add_argument("--train-size", help="HxW of the first steps (default: the policy's)")
    parser.add_argument("--full-size-steps", type=int, default=0, help="steps at the policy's size afterwards")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--full-size-batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--lr-backbone", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    artifacts = initial_artifacts(args.init)
    model = ACT(artifacts.spec)
    model.load_state_dict(dict(artifacts.weights))
    full = tuple(artifacts.spec.cameras[0].shape[1:])
    first = tuple(int(v) for v in args.train_size.split("x")) if args.train_size else full
    start = time.monotonic()
    for size, steps, batch in ((first, args.steps, args.batch), (full, args.full_size_steps, args.full_size_batch)):
        for step, loss in train_steps(model, artifacts, size, steps, batch, args.lr, args.lr_backbone, rng):
            if step == 1 or step % 50 == 0 or step == steps:
                print(f"{size[0]}x{size[1]} step {step}/{steps}: L1 {loss:.4f} ({time.monotonic() - start:.0f} s)",
                      flush=True)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trained = PolicyArtifacts(spec=artifacts.spec, weights=weights, input_stats=artifacts.input_stats,
                              action_stats=artifacts.action_stats)
    export_bundle(trained, args.out)
    print(f"wrote {args.out}: {full[0]}x{full[1]} policy from {args.init}, trained {args.steps} steps at "
          f"{first[0]}x{first[1]} + {args.full_size_steps} at full size")


if __name__ == "__main__":
    main()
