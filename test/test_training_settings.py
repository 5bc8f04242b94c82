"""Every training-time setting that changes the actions is applied on every path, or refused with the reason.

The list and which test covers each (setting, path) pair is docs/deploy.md, "Training-time settings".
References are LeRobot 0.4.4's own outputs (``fixtures/lerobot_parity``): case ``b`` (MIN_MAX state and
action, two cameras, ``rename_map`` laptop → front, ``n_action_steps`` 4) and case ``c`` (temporal
ensembling 0.01). Paths: the Python API (``load_policy``), a deploy bundle, offline replay, and the
node's ROS-free runtime (``runtime.session``: what ``on_configure`` builds).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from lerobot_layout import materialize_parity_case

import act_policy
from act_policy.core.config import STATE_KEY, NormMode
from act_policy.core.errors import ObservationError
from act_policy.core.image_messages import RawImage
from act_policy.core.policy import Policy
from act_policy.data import CameraStream, Episode
from act_policy.evaluation.replay import replay
from act_policy.export.bundle import WEIGHTS_FILE, policy_document, write_policy_document, write_weights
from act_policy.runtime.parameters import ParameterError, validate
from act_policy.runtime.session import build_runtime, load_node_policy

TOLERANCE = 1e-4  # action units, as in test_parity_lerobot
JOINTS = [f"joint{i}" for i in range(6)]


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, tuple[Path, dict, dict]]:
    root = tmp_path_factory.mktemp("settings")
    out = {}
    for name in ("b", "c"):
        folder, meta = materialize_parity_case(name, root / name)
        out[name] = (folder, meta, dict(np.load(folder / "episode.npz")))
    return out


def robot_observations(meta: dict, episode: dict) -> list[dict[str, np.ndarray]]:
    """What the robot side sends, under its own names (before LeRobot's rename step)."""
    return [{k: episode[f"obs/{k}"][t] for k in meta["raw_observation_keys"]} for t in range(meta["steps"])]


def bundle_of(checkpoint: Path, folder: Path) -> Path:
    """A deploy bundle of ``checkpoint`` with what torch backends read (policy.json + weights): the
    settings travel in policy.json; the ONNX graphs are checked by test_export."""
    artifacts = act_policy.load_artifacts(checkpoint)
    folder.mkdir()
    document = policy_document(artifacts, None)
    write_weights(artifacts, folder)
    document["files"] = {WEIGHTS_FILE: ""}
    write_policy_document(folder, document)
    return folder


def episode_of(meta: dict, episode: dict, spec) -> Episode:
    """The fixture's episode as a recording would give it to replay (policy feature names, dataset fps)."""
    steps = meta["steps"]
    cameras = {}
    for f in spec.cameras:
        source = next(k for k in meta["raw_observation_keys"] if spec.rename_map.get(k, k) == f.name)
        frames = episode[f"obs/{source}"]
        cameras[f.name] = CameraStream(f.shape[1], f.shape[2], "memory", lambda frames=frames: iter(frames))
    return Episode(source="memory", index=0, fps=30.0, timestamps=np.arange(steps) / 30.0,
                   vectors={STATE_KEY: episode[f"obs/{STATE_KEY}"]}, cameras=cameras, actions=None,
                   joint_names=tuple(JOINTS))


def select_actions(policy: Policy, observations: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.stack([policy.select_action(o) for o in observations])


# --------------------------------------------------------------------------- API and bundle
@pytest.mark.parametrize("case", ["b", "c"])
def test_api_and_bundle_apply_normalization_rename_map_and_schedule(cases, case: str, tmp_path: Path) -> None:
    folder, meta, episode = cases[case]
    for path in (folder, bundle_of(folder, tmp_path / "bundle")):
        policy = act_policy.load_policy(path)
        actions = select_actions(policy, robot_observations(meta, episode))
        assert np.abs(actions - episode["actions"]).max() <= TOLERANCE, path
    if case == "b":  # what made it so
        assert policy.rename_map == {"observation.images.laptop": "observation.images.front"}
        assert policy.spec.state.norm_mode is NormMode.MIN_MAX and policy.n_action_steps == 4
    else:
        assert policy.temporal_ensemble_coeff == 0.01 and policy.n_action_steps == 1


def test_api_and_bundle_refuse_images_of_another_size(cases, tmp_path: Path) -> None:
    folder, meta, episode = cases["b"]
    obs = robot_observations(meta, episode)[0]
    small = {**obs, "observation.images.laptop": obs["observation.images.laptop"][:32]}
    for path in (folder, bundle_of(folder, tmp_path / "bundle")):
        with pytest.raises(ObservationError, match=r"observation.images.front.*expected uint8 RGB image of shape "
                                                   r"\(64, 80, 3\), got uint8 \(32, 80, 3\)"):
            act_policy.load_policy(path).predict_chunk(small)


# --------------------------------------------------------------------------- replay
@pytest.mark.parametrize("case", ["b", "c"])
def test_replay_applies_the_checkpoints_normalization_and_schedule(cases, case: str) -> None:
    folder, meta, episode = cases[case]
    artifacts = act_policy.load_artifacts(folder)
    result = replay(artifacts, episode_of(meta, episode, artifacts.spec), [], latency_samples=0, num_threads=1)
    run = result.run("cpu_fp32")
    assert np.abs(run.actions - episode["actions"]).max() <= TOLERANCE
    assert run.inference_steps == (list(range(meta["steps"])) if case == "c" else [0, 4, 8])
    assert result.as_dict()["backends"]["cpu_fp32"]["control_rate"]["rate_hz"] == 30.0  # the recording's fps


# --------------------------------------------------------------------------- node runtime
def node_params(**overrides) -> dict:
    return {"model_path": "", "joint_names": JOINTS, "camera_topics": ["laptop=/cam/a", "wrist=/cam/b"],
            **overrides}


def test_node_runtime_applies_rename_map_normalization_and_n_action_steps(cases) -> None:
    folder, meta, episode = cases["b"]
    params = node_params(model_path=str(folder))
    policy = load_node_policy(validate(params))
    rt = build_runtime(params, policy)  # the robot-side camera name is accepted through the rename_map
    try:
        assert rt.camera_topics == {"observation.images.front": "/cam/a", "observation.images.wrist": "/cam/b"}
        assert rt.loop.schedule.n_action_steps == 4  # the checkpoint's, no parameter given
        obs = robot_observations(meta, episode)[0]
        for feature, source in (("observation.images.front", "observation.images.laptop"),
                                ("observation.images.wrist", "observation.images.wrist")):
            rt.cache.update_image(feature, RawImage("rgb8", obs[source].tobytes(), 64, 80, 240))
        rt.cache.update_joints(JOINTS, obs[STATE_KEY].tolist())
        capture = rt.cache.capture()
        observation = {**rt.cache.convert(capture), STATE_KEY: rt.loop.units.to_policy(capture.joint_positions)}
        chunk = rt.policy.predict_chunk(observation)  # what the control loop's worker infers
        assert np.abs(chunk - episode["chunk0"]).max() <= TOLERANCE
    finally:
        rt.close()


def test_node_runtime_refuses_a_camera_the_policy_does_not_have(cases) -> None:
    folder, _, _ = cases["b"]
    params = node_params(model_path=str(folder), camera_topics=["top=/cam/a", "wrist=/cam/b"])
    policy = load_node_policy(validate(params))
    with pytest.raises(ParameterError, match=r"camera_topics: expected one entry for each camera of the policy "
                                             r".*missing \['observation.images.front'\], unknown "
                                             r"\['observation.images.top'\]"):
        build_runtime(params, policy)
    policy.close()


def test_node_runtime_refuses_images_of_another_size_unless_resizing_is_allowed(cases) -> None:
    folder, meta, episode = cases["b"]
    frame = robot_observations(meta, episode)[0]["observation.images.wrist"]
    small = RawImage("rgb8", np.ascontiguousarray(frame[::2, ::2]).tobytes(), 32, 40, 120)
    for allow_resize in (False, True):
        params = node_params(model_path=str(folder), allow_resize=allow_resize)
        rt = build_runtime(params, load_node_policy(validate(params)))
        try:
            rt.cache.update_image("observation.images.wrist", small)
            rt.cache.update_image("observation.images.front", small)
            rt.cache.update_joints(JOINTS, [0.0] * 6)
            if allow_resize:
                assert rt.cache.convert(rt.cache.capture())["observation.images.wrist"].shape == (64, 80, 3)
            else:
                with pytest.raises(ObservationError, match=r"/cam/.: image is 40x32 but the policy was trained "
                                                           r"on 80x64"):
                    rt.cache.convert(rt.cache.capture())
        finally:
            rt.close()


def test_environment_state_is_applied_by_the_api_and_refused_by_the_node() -> None:
    from conftest import tiny_spec

    from act_policy.backends import create_backend
    from act_policy.core.config import ENV_STATE_KEY, Feature, FeatureType
    from act_policy.core.synthetic import demo_artifacts

    spec = tiny_spec()
    spec = dataclasses.replace(spec, inputs=(*spec.inputs, Feature(ENV_STATE_KEY, FeatureType.ENV, (3,))))
    policy = Policy(artifacts := demo_artifacts(spec, seed=1), create_backend("cpu_fp32", artifacts))
    obs = {"observation.state": np.zeros(6, np.float32), "observation.images.front": np.zeros((64, 80, 3), np.uint8)}
    with pytest.raises(ObservationError, match=r"missing 'observation\.environment_state'"):
        policy.predict_chunk(obs)
    one, two = (policy.predict_chunk({**obs, ENV_STATE_KEY: np.full(3, v, np.float32)}) for v in (0.0, 5.0))
    assert not np.allclose(one, two)  # the network reads it
    with pytest.raises(ParameterError, match=r"needs 'observation\.environment_state', which the node cannot"):
        build_runtime(node_params(camera_topics=["front=/cam/a"]), policy)
