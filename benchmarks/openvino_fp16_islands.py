"""Where ``openvino_fp16``'s error comes from: the float graph in fp16 with parts kept float32, on the emulated A76.

For each variant, OpenVINO's CPU plugin compiles the bundle's act_fp32.onnx with INFERENCE_PRECISION_HINT f16
and one thread, the variant's nodes marked float32 with the backend's own :func:`mark_float32` (OpenVINO's
DisablePrecisionConversion attribute), and runs the held-out observations under the arm rig (QEMU Cortex-A76 with
the armcount plugin). Counted: the compiled model's inference alone (no Python pre/post-processing, unlike
pi5_proxy.py). Accuracy: the network's normalized output vs onnx_fp32 on the host (x86) for the same inputs,
relative L2 and max |per-joint mean| in σ. The guest also reads back the runtime precision of the island kernels.

Variants: ``+``-joined parts, e.g. ``none``, ``all``, ``backbone``, ``transformer`` (all but the backbone),
``layer1`` … ``layer4`` and ``stem`` (ResNet stages), ``ln`` (LayerNorms), ``scores`` (attention score MatMuls +
Softmax), ``resid`` (the transformer's residual Adds), ``attn`` (all attention nodes), ``layer3+layer4``. Usage::

    ARM_RIG=/path/to/arm_rig ARM_EXTRA_PYTHONPATH=<aarch64 openvino site dir> \\
        python benchmarks/openvino_fp16_islands.py BUNDLE --variants none,layer4 --observations 2 --work W
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout, on the host and in the guest alike
    sys.path.insert(0, str(REPO))

GRAPH = "act_fp32.onnx"
BACKBONE_OUTPUT = "/model/encoder_img_feat_input_proj/Conv/WithoutBiases"  # first node after the backbone


def island_nodes(model, variant: str) -> frozenset[str]:
    """Names of the computing nodes of ``variant`` in the OpenVINO model read from the bundle's float graph."""
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() not in ("Parameter", "Result", "Constant")]
    projection = next(op for op in ops if op.get_friendly_name() == BACKBONE_OUTPUT)
    backbone, stack = set(), [projection.input_value(0).get_node()]
    while stack:  # everything upstream of the projection = the backbone
        node = stack.pop()
        if node.get_friendly_name() not in backbone:
            backbone.add(node.get_friendly_name())
            stack += [value.get_node() for value in node.input_values()]
    chosen: set[str] = set()
    for part in variant.split("+"):
        for op in ops:
            name, kind = op.get_friendly_name(), op.get_type_name()
            if (part == "all" or (part == "backbone" and name in backbone)
                    or (part == "transformer" and name not in backbone)
                    or (part.startswith("layer") and f"/backbone/{part}/" in name)
                    or (part == "stem" and name in backbone and "/backbone/layer" not in name)
                    or (part == "scores" and "attn/" in name and kind in ("MatMul", "Softmax")
                        and "WithoutBiases" not in name)
                    or (part == "resid" and kind == "Add" and "/layers." in name
                        and name.rsplit("/", 1)[-1].startswith("Add"))
                    or (part == "attn" and "attn" in name)):
                chosen.add(name)
            if part == "ln" and kind == "MVN":  # ONNX LayerNormalization = MVN, then γ Multiply, then β Add
                chosen.add(name)
                for scale in (t.get_node() for t in op.output(0).get_target_inputs()):
                    chosen.add(scale.get_friendly_name())
                    chosen.update(t.get_node().get_friendly_name() for t in scale.output(0).get_target_inputs())
    for op in ops:  # the unnamed scaling Multiply OpenVINO's ONNX reader puts after a Gemm's MatMul goes with it
        name = op.get_friendly_name()
        if name.startswith("Multiply_") and op.input_value(0).get_node().get_friendly_name() in chosen:
            chosen.add(name)
    return frozenset(chosen)


def guest(bundle: Path, work: Path, variants: list[str]) -> None:
    import openvino as ov
    from armmark import mark

    from act_policy.backends.openvino import mark_float32

    saved = np.load(work / "feeds.npz")
    names = json.loads((bundle / "policy.json").read_text())["graphs"]["inputs"]
    feeds = [{k: saved[f"{i}/{k}"] for k in names} for i in range(int(saved["count"]))]
    core, report = ov.Core(), {}
    for v, variant in enumerate(variants):
        base = 100 * (v + 1)  # marks: base + 11 + 2i after counted inference i
        model = core.read_model(str(bundle / GRAPH))
        nodes = island_nodes(model, variant) if variant != "none" else frozenset()
        if nodes:
            model = mark_float32(core, model, nodes, bundle / GRAPH)
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": ov.Type.f16,
                                                     "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        request.infer(feeds[0])  # warm-up
        outputs = []
        for i, feed in enumerate(feeds):
            mark(base + 10 + 2 * i)
            request.infer(feed)
            mark(base + 11 + 2 * i)
            outputs.append(np.array(request.get_output_tensor(0).data[0], np.float32))
        island_precisions: dict[str, int] = {}
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if set(info["originalLayersNames"].astype(str).split(",")) & nodes:
                precision = info["runtimePrecision"].astype(str)
                island_precisions[precision] = island_precisions.get(precision, 0) + 1
        np.save(work / f"{variant}.npy", np.stack(outputs))
        report[variant] = {"nodes": len(nodes), "island_kernel_precisions": island_precisions}
        (work / "guest.json").write_text(json.dumps(report, indent=1))
        del request, compiled


def host(args: argparse.Namespace) -> None:
    from act_policy.backends import BackendOptions, create_backend
    from act_policy.backends.base import flat_inputs
    from act_policy.core.policy import Policy, load_artifacts
    from act_policy.export.fidelity import held_out_observations

    rig = Path(os.environ.get("ARM_RIG", ""))
    if not (rig / "run_arm.sh").is_file():
        sys.exit("openvino_fp16_islands: set ARM_RIG to the arm rig folder holding run_arm.sh")
    args.work.mkdir(parents=True, exist_ok=True)
    artifacts = load_artifacts(args.bundle)
    names = json.loads((args.bundle / "policy.json").read_text())["graphs"]["inputs"]
    reference = Policy(artifacts, create_backend("onnx_fp32", artifacts, BackendOptions(num_threads=1)))
    feeds, expected = {}, []
    for i, observation in enumerate(held_out_observations(artifacts, args.observations)):
        inputs = reference.preprocess(observation)
        feeds.update({f"{i}/{name}": array for name, array in zip(names, flat_inputs(inputs), strict=True)})
        expected.append(reference.backend.infer(inputs))
    np.savez(args.work / "feeds.npz", count=args.observations, **feeds)
    counts = args.work / "counts.jsonl"
    counts.unlink(missing_ok=True)
    env = {**os.environ, "ARM_COUNT_OUT": str(counts), "ARM_PROJECT": str(REPO), "ARM_NICE": "19"}
    subprocess.run(["bash", str(rig / "run_arm.sh"), str(Path(__file__).resolve()), str(args.bundle),
                    "--variants", args.variants, "--work", str(args.work), "--guest"], env=env, check=True)
    print(table(np.stack(expected).astype(np.float64), args.work, args.variants.split(",")))


def table(reference: np.ndarray, work: Path, variants: list[str]) -> str:
    marks = {line["label"]: line["delta"] for line in map(json.loads, (work / "counts.jsonl").read_text().splitlines())
             if line.get("event") == "mark"}
    report = json.loads((work / "guest.json").read_text())
    lines = ["| variant | nodes float32 | island kernels (runtime precision) | M insn / inference | FMLA f32 | fp16 | "
             "rel L2 norm | max \\|bias\\| σ |", "|---|---|---|---|---|---|---|---|"]
    for v, variant in enumerate(variants):
        diff = (np.load(work / f"{variant}.npy").astype(np.float64) - reference).reshape(-1, reference.shape[-1])
        counted = [marks[100 * (v + 1) + 11 + 2 * i] for i in range(len(reference))]
        total = np.mean([c["total"] for c in counted])
        share = {key: np.mean([c.get(key, 0) for c in counted]) / total for key in ("fmla_f32", "fp16_vec", "fcvt_f16")}
        kernels = ", ".join(f"{n} {p}" for p, n in report[variant]["island_kernel_precisions"].items()) or "–"
        lines.append(f"| {variant} | {report[variant]['nodes']} | {kernels} | {total / 1e6:,.0f} | "
                     f"{share['fmla_f32']:.1%} | {share['fp16_vec'] + share['fcvt_f16']:.1%} | "
                     f"{np.linalg.norm(diff) / np.linalg.norm(reference):.2%} | {np.abs(diff.mean(0)).max():.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path, help="deploy bundle folder (act-policy export)")
    parser.add_argument("--variants", default="none,layer4", help="comma-separated variants (see above)")
    parser.add_argument("--observations", type=int, default=2, help="held-out observations counted (default 2)")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (feeds, outputs, counts)")
    parser.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.guest:
        guest(args.bundle, args.work, args.variants.split(","))
    else:
        host(args)


if __name__ == "__main__":
    main()
