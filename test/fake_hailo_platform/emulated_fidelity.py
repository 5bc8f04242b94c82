"""Emulated fidelity of the hailo hybrid path vs cpu_fp32 on the seeded default-size demo model (no hardware).

Exports the demo bundle, writes a kit with synthetic calibration, compiles it with the fake DFC
(``--inside``: 8-bit weights and activations emulated inside the backbone too, see fake_dfc.py),
loads the HEF with the fake HailoRT and compares action chunks with cpu_fp32 on
``act_policy.export.fidelity``'s held-out scenes. Prints fidelity only: the fake's timings are
not an NPU's. This is how the FP32-head numbers in docs/hailo.md were produced; on a bundle
whose ``hailo/`` holds fake-compiled HEFs, ``act-policy benchmark --backends hailo`` with this
folder on PYTHONPATH reports the same fidelity (and labels the backend emulated)::

    python test/fake_hailo_platform/emulated_fidelity.py --work /tmp/emu [--inside]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the fake hailo_platform, and test helpers

from hailo_testing import fake_dfc_path, run_compile  # noqa: E402

from act_policy.backends import BackendOptions, create_backend  # noqa: E402
from act_policy.core.policy import Policy  # noqa: E402
from act_policy.core.synthetic import demo_artifacts  # noqa: E402
from act_policy.export import export_bundle, load_bundle, stderr_progress  # noqa: E402
from act_policy.export.calibration import calibration_observations  # noqa: E402
from act_policy.export.fidelity import compare, held_out_observations  # noqa: E402
from act_policy.hailo.kit import write_kit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the bundle, kit and HEFs")
    parser.add_argument("--inside", action="store_true", help="emulate 8-bit inside the backbone too")
    parser.add_argument("--calib", type=int, default=64, help="calibration frames (default 64)")
    parser.add_argument("--held-out", type=int, default=8, help="held-out scenes (default 8)")
    args = parser.parse_args()
    bundle = args.work / "bundle"
    if not (bundle / "policy.json").is_file():
        export_bundle(demo_artifacts(), bundle, progress=stderr_progress)
    artifacts = load_bundle(bundle)
    observations = calibration_observations(None, artifacts.spec, artifacts.input_stats, args.calib)
    write_kit(artifacts, args.work / "kit", "hailo8l", observations, calib_size=args.calib, overwrite=True,
              progress=stderr_progress)
    if args.inside:
        os.environ["FAKE_DFC_QUANTIZE_INSIDE"] = "1"
    result = run_compile(args.work / "kit", fake_dfc_path(args.work / "bin"))
    if result.returncode != 0:
        sys.exit(result.stderr)
    shutil.rmtree(bundle / "hailo", ignore_errors=True)
    shutil.copytree(args.work / "kit" / "hef", bundle / "hailo")
    held_out = held_out_observations(artifacts, args.held_out)
    chunks = {}
    # The fake computes the backbone on the CPU, far slower than the NPU: give it time.
    for name, extra in (("cpu_fp32", {}), ("hailo", {"timeout_ms": 600_000})):
        policy = Policy(artifacts, create_backend(name, artifacts, BackendOptions(extra=extra)))
        chunks[name] = [policy.predict_chunk(o) for o in held_out]
        policy.close()
    label = ("8-bit input, 16-bit output, 8-bit inside (ORT QDQ proxy)" if args.inside
             else "8-bit input, 16-bit output (the kit's model script), float inside")
    print(json.dumps({"backend": "hailo (hybrid, EMULATED: fake HailoRT + fake DFC)", "emulation": label,
                      "fidelity_vs_cpu_fp32": compare(chunks["cpu_fp32"], chunks["hailo"], artifacts)}, indent=2))


if __name__ == "__main__":
    main()
