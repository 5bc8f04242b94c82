"""Make the inputs of the replay example in docs/replay.md: a demo policy bundle and a LeRobot dataset.

    python docs/make_replay_demo.py /tmp/replay_demo

writes ``/tmp/replay_demo/demo_bundle`` (the seeded default-size ACT of ``act-policy demo``:
ResNet18, one 480x640 camera, 6 joints, chunk 100, exported as a deploy bundle) and
``/tmp/replay_demo/demo_dataset`` (a LeRobot v3.0 dataset, one 8 s episode at 30 fps of the
demo's synthetic scene, h264 video). Seeded weights imitate nothing, so the dataset's
"recorded" actions are the FP32 policy's own commands on the decoded episode plus Gaussian
noise of 1 % of each joint's action std: a known ground truth (cpu_fp32 differs from it by
the noise alone) that makes the picture readable. On your own data the recorded actions are
the demonstrator's.

Run from a repository checkout: the dataset writer is the test suite's (test/dataset_layout.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))

from dataset_layout import EpisodeData, write_v30

from act_policy.backends import BackendOptions, create_backend
from act_policy.core.policy import Policy
from act_policy.core.synthetic import DEMO_CAMERA, demo_artifacts, synthetic_observations
from act_policy.data import read_episode
from act_policy.export import export_bundle

FPS = 30
SECONDS = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for demo_bundle/ and demo_dataset/")
    args = parser.parse_args()
    artifacts = demo_artifacts()
    if not (args.out / "demo_bundle" / "policy.json").is_file():
        export_bundle(artifacts, args.out / "demo_bundle")

    steps = FPS * SECONDS
    observations = list(synthetic_observations(artifacts.spec, artifacts.input_stats, steps, dt=1 / FPS))
    episode = EpisodeData(state=np.stack([o["observation.state"] for o in observations]),
                          action=np.zeros((steps, artifacts.spec.action_dim), np.float32),
                          frames={DEMO_CAMERA: np.stack([o[DEMO_CAMERA] for o in observations])})
    root = write_v30(args.out / "demo_dataset", [episode], fps=FPS)

    print(f"running the FP32 policy over the {steps} decoded frames for the 'recorded' actions", file=sys.stderr)
    policy = Policy(artifacts, create_backend("cpu_fp32", artifacts, BackendOptions()))
    own = np.stack([policy.select_action(o) for o in read_episode(root, 0, artifacts.spec).observations()])
    noise = np.random.default_rng(0).normal(0.0, 0.01, own.shape) * artifacts.action_stats["action"]["std"]
    data_file = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data_file)
    recorded = pa.array(list((own + noise).astype(np.float32)), type=pa.list_(pa.float32()))
    pq.write_table(table.set_column(table.schema.get_field_index("action"), "action", recorded), data_file)
    print(f"wrote {args.out / 'demo_bundle'} and {args.out / 'demo_dataset'}", file=sys.stderr)


if __name__ == "__main__":
    main()
