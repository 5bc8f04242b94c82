"""Run a deploy bundle on aarch64 with torch absent, and compare its actions with x86's.

For ``../shared/arm_rig`` (emulated Cortex-A76 / A72), whose Python site has torch: this script first
makes torch absent from the import system (a ``sys.meta_path`` wrapper whose finders find no ``torch``,
as ``import`` and ``importlib.util.find_spec`` both see it), then loads BUNDLE with onnx_fp32 and
cpu_int8, predicts 4 chunks on seeded synthetic scenes and compares them with REFERENCE.npz (written
by ``--reference`` on x86)::

    python3 benchmarks/arm_torch_free.py BUNDLE x86.npz --reference                       # x86, torch env
    ARM_PROJECT=$PWD bash ../shared/arm_rig/run_arm.sh benchmarks/arm_torch_free.py BUNDLE x86.npz
"""

from __future__ import annotations

import json
import sys

BACKENDS = ("onnx_fp32", "cpu_int8")


class _NoTorch:
    def __init__(self, inner) -> None:
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        return None if name.split(".")[0] == "torch" else self.inner.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


def chunks(bundle: str, backend: str):
    import numpy as np

    import act_policy
    from act_policy.core.synthetic import synthetic_observations

    policy = act_policy.load_policy(bundle, backend=backend, num_threads=1)
    return np.array([policy.predict_chunk(o) for o in synthetic_observations(policy.spec,
                                                                             policy.artifacts.input_stats, 4, seed=5)])


def main() -> int:
    bundle, reference = sys.argv[1], sys.argv[2]
    import numpy as np

    if "--reference" in sys.argv:
        np.savez(reference, **{b: chunks(bundle, b) for b in BACKENDS})
        return 0
    sys.meta_path[:] = [_NoTorch(f) for f in sys.meta_path]
    import platform

    import act_policy

    expected = np.load(reference)
    out: dict = {"machine": platform.machine()}
    for backend in BACKENDS:
        got, ref = chunks(bundle, backend), expected[backend]
        out[backend] = {"max_abs_vs_x86": float(np.abs(got - ref).max()),
                        "rel_l2_vs_x86": float(np.linalg.norm(got - ref) / np.linalg.norm(ref))}
    try:
        act_policy.load_policy(bundle, backend="cpu_fp32")
    except act_policy.ActPolicyError as exc:
        out["cpu_fp32"] = f"{type(exc).__name__}: {str(exc)[:100]}"
    out["torch_modules_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
