"""The trained-weights INT8 study's task and training loop (benchmarks/int8_trained.py)."""

from __future__ import annotations

import numpy as np
import torch

from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.model import ACT
from act_policy.core.synthetic import synthetic_observations
from benchmarks.int8_trained import task_batch, task_vectors, train_steps


def test_the_task_is_the_synthetic_scenes_state_now_and_its_next_states_as_the_chunk(
        tiny_artifacts: PolicyArtifacts) -> None:
    artifacts = tiny_artifacts
    spec = artifacts.spec
    chunk = spec.config.chunk_size
    norm = artifacts.input_normalizer()
    scenes = synthetic_observations(spec, artifacts.input_stats, chunk + 1, dt=1 / spec.fps)
    states = np.stack([norm.normalize(spec.state.name, o[spec.state.name]) for o in scenes])
    state, target = task_vectors(spec, 0.0)
    np.testing.assert_allclose(state, states[0], atol=1e-5)
    np.testing.assert_allclose(target, states[1:], atol=1e-5)


def test_a_batch_holds_normalized_images_states_and_chunks_of_the_policy_s_shapes(
        tiny_artifacts: PolicyArtifacts) -> None:
    spec = tiny_artifacts.spec
    images, state, target = task_batch(tiny_artifacts, (48, 64), 3, np.random.default_rng(0))
    assert images.shape == (3, 3, 48, 64) and state.shape == (3, spec.state.shape[0])
    assert target.shape == (3, spec.config.chunk_size, spec.action_dim)
    assert abs(float(images.mean())) < 3  # ImageNet-normalized, not raw 0-255 pixels


def test_training_lowers_the_l1_loss_on_the_task(tiny_artifacts: PolicyArtifacts) -> None:
    torch.manual_seed(0)
    model = ACT(tiny_artifacts.spec)
    model.load_state_dict(dict(tiny_artifacts.weights))
    losses = [loss for _, loss in train_steps(model, tiny_artifacts, (48, 64), 40, 4, 1e-3, 1e-4,
                                               np.random.default_rng(0))]
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])
