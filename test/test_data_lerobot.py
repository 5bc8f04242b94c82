"""LeRobot dataset reader: both on-disk layouts, the right frame for every step, named errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("av")

from conftest import tiny_spec
from dataset_layout import EpisodeData, flat_color_frames, frame_index_of, write_v21, write_v30

from act_policy.data import DatasetError, read_episode
from act_policy.data.lerobot_dataset import LeRobotDataset

FRONT = "observation.images.front"
def offset(index: int) -> int:
    """Odd episodes get other colours than even ones, so frames from a neighbouring episode show."""
    return 100 * (index % 2)


LOSSY_TOLERANCE = 8  # h264 yuv420p on flat colours: a few grey levels


def episodes(height: int = 64, width: int = 80, steps: tuple[int, ...] = (12, 9)) -> list[EpisodeData]:
    rng = np.random.default_rng(3)
    return [EpisodeData(rng.normal(0, 20, (n, 6)).astype(np.float32), rng.normal(0, 20, (n, 6)).astype(np.float32),
                        {FRONT: flat_color_frames(n, height, width, offset(i))}) for i, n in enumerate(steps)]


WRITERS = {"v2.1": write_v21, "v3.0": write_v30}


@pytest.mark.parametrize("version", WRITERS)
def test_every_episode_yields_its_own_vectors_and_the_frame_of_each_step(tmp_path: Path, version: str) -> None:
    data = episodes()
    root = WRITERS[version](tmp_path / "ds", data)
    for index, original in enumerate(data):
        ep = read_episode(root, index)
        assert len(ep) == len(original.state) and ep.fps == 30.0
        np.testing.assert_array_equal(ep.vectors["observation.state"], original.state)
        np.testing.assert_array_equal(ep.actions, original.action)
        np.testing.assert_allclose(ep.timestamps, np.arange(len(ep)) / 30, atol=1e-6)
        assert ep.joint_names == tuple(f"joint_{i}.pos" for i in range(6))
        frames = [obs[FRONT] for obs in ep.observations()]
        assert [frame_index_of(f, len(ep), offset(index)) for f in frames] == list(range(len(ep)))
        worst = max(int(np.abs(f.astype(int) - o.astype(int)).max()) for f, o in zip(frames, original.frames[FRONT],
                                                                                     strict=True))
        assert worst <= LOSSY_TOLERANCE
        assert all(f.dtype == np.uint8 and f.shape == (64, 80, 3) for f in frames)


def test_v30_reads_episode_rows_from_the_shared_file_by_episode_index(tmp_path: Path) -> None:
    root = write_v30(tmp_path / "ds", episodes(steps=(5, 7, 6)))
    meta = LeRobotDataset(root)
    assert meta.data_file(2) == root / "data/chunk-000/file-000.parquet"
    video, start = meta.video_file(2, FRONT)
    assert video == root / f"videos/{FRONT}/chunk-000/file-000.mp4" and start == pytest.approx(12 / 30)
    assert len(read_episode(root, 1)) == 7


def test_v21_paths_follow_episode_chunks(tmp_path: Path) -> None:
    root = write_v21(tmp_path / "ds", episodes(steps=(4, 4, 4)), chunks_size=2)
    meta = LeRobotDataset(root)
    assert meta.data_file(2) == root / "data/chunk-001/episode_000002.parquet"
    assert meta.video_file(2, FRONT) == (root / f"videos/chunk-001/{FRONT}/episode_000002.mp4", 0.0)
    assert [frame_index_of(o[FRONT], 4, offset(2)) for o in read_episode(root, 2).observations()] == [0, 1, 2, 3]


@pytest.mark.parametrize("embedded", [True, False], ids=["png-bytes-in-parquet", "images-folder"])
def test_image_datasets_decode_png_losslessly(tmp_path: Path, embedded: bool) -> None:
    data = episodes(steps=(5,))
    root = write_v21(tmp_path / "ds", data, camera_dtype="image", embed_images=embedded)
    frames = [obs[FRONT] for obs in read_episode(root, 0).observations()]
    np.testing.assert_array_equal(np.stack(frames), data[0].frames[FRONT])


def test_with_a_policy_only_its_features_are_loaded(tmp_path: Path) -> None:
    data = episodes(steps=(4,))
    data[0].frames["observation.images.wrist"] = flat_color_frames(4, 48, 64)
    root = write_v30(tmp_path / "ds", data)
    ep = read_episode(root, 0, tiny_spec())
    assert set(ep.cameras) == {FRONT} and set(ep.vectors) == {"observation.state"}
    assert set(read_episode(root, 0).cameras) == {FRONT, "observation.images.wrist"}


def test_policy_rename_map_finds_the_recorded_name(tmp_path: Path) -> None:
    data = episodes(steps=(3,))
    data[0].frames = {"observation.images.top": data[0].frames[FRONT]}
    root = write_v30(tmp_path / "ds", data)
    spec = dataclasses.replace(tiny_spec(), rename_map={"observation.images.top": FRONT})
    assert set(read_episode(root, 0, spec).cameras) == {"observation.images.top"}
    with pytest.raises(DatasetError, match=r"needs feature 'observation\.images\.front'.*observation\.images\.top"):
        read_episode(root, 0, tiny_spec())


def test_missing_episode_names_the_episodes_that_exist(tmp_path: Path) -> None:
    for version, writer in WRITERS.items():
        root = writer(tmp_path / version, episodes(steps=(3, 3, 3)))
        with pytest.raises(DatasetError, match=r"episode 7 does not exist; episodes in this dataset: 0-2"):
            read_episode(root, 7)


def test_resolution_mismatch_says_expected_and_recorded(tmp_path: Path) -> None:
    root = write_v30(tmp_path / "ds", episodes(height=48, width=64, steps=(3,)))
    with pytest.raises(DatasetError, match=r"info\.json.*resolution mismatch.*expects 64x80.*\(48, 64, 3\)"):
        read_episode(root, 0, tiny_spec())


def test_state_size_mismatch_is_named(tmp_path: Path) -> None:
    root = write_v30(tmp_path / "ds", episodes(steps=(3,)))
    with pytest.raises(DatasetError, match=r"'observation\.state' has shape \(6,\) but the policy expects \(7,\)"):
        read_episode(root, 0, dataclasses.replace(tiny_spec(), inputs=tuple(
            dataclasses.replace(f, shape=(7,)) if f.name == "observation.state" else f for f in tiny_spec().inputs)))


def test_unsupported_version_and_missing_files_are_named(tmp_path: Path) -> None:
    root = write_v30(tmp_path / "ds", episodes(steps=(3,)))
    (root / f"videos/{FRONT}/chunk-000/file-000.mp4").unlink()
    with pytest.raises(DatasetError, match=r"file-000\.mp4 does not exist"):
        list(read_episode(root, 0).observations())
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(DatasetError, match=r"codebase_version 'v1\.6' is not supported"):
        read_episode(root, 0)
    with pytest.raises(DatasetError, match=r"neither a LeRobot dataset"):
        read_episode(tmp_path, 0)


def test_frames_farther_than_the_tolerance_from_a_timestamp_are_refused(tmp_path: Path) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = write_v21(tmp_path / "ds", episodes(steps=(6,)))
    path = root / "data/chunk-000/episode_000000.parquet"
    table = pq.read_table(path)
    shifted = pc.add(table.column("timestamp"), np.float32(0.5 / 30))  # half a frame late
    pq.write_table(table.set_column(table.schema.get_field_index("timestamp"), "timestamp", shifted), path)
    with pytest.raises(DatasetError, match=r"no frame of .*episode_000000\.mp4 within 0\.0001 s of t=0\.0167"):
        list(read_episode(root, 0).observations())


FIXTURES = Path(__file__).parent / "fixtures" / "lerobot_datasets"


@pytest.mark.parametrize("folder", ["v21", "v30"])
def test_datasets_written_by_lerobot_itself_read_back_frame_for_frame(folder: str) -> None:
    """Values and colours follow make_fixture.py: state = arange(6) + 100·episode + frame, action = state + 0.5."""
    for index, steps in enumerate((5, 4)):
        ep = read_episode(FIXTURES / folder, index, tiny_spec())
        assert len(ep) == steps and ep.fps == 10.0
        state = np.arange(6, dtype=np.float32) + 100 * index + np.arange(steps, dtype=np.float32)[:, None]
        np.testing.assert_array_equal(ep.vectors["observation.state"], state)
        np.testing.assert_array_equal(ep.actions, state + 0.5)
        for frame, obs in enumerate(ep.observations()):
            value = 30 + 40 * frame + 15 * index
            expected = np.array([value, 255 - value, (3 * value) % 256])
            assert np.abs(obs[FRONT].reshape(-1, 3).mean(0) - expected).max() < 6  # AV1 at CRF 30


def test_episode_lists_in_errors_are_compact_ranges() -> None:
    from act_policy.data.episode import describe_indices

    assert describe_indices([7, 0, 1, 2, 4, 6]) == "0-2, 4, 6-7"
    assert describe_indices([]) == "none"
