"""Raspberry Pi 5 proxy benchmark: instructions per inference on an emulated Cortex-A76, and accuracy.

Runs each runner (a registered backend, or a candidate runtime not adopted as one) under the arm
rig (``../shared/arm_rig``: QEMU user mode as a Cortex-A76 with the armcount instruction-counting
plugin, PyPI's aarch64 wheels), one thread, and writes ``OUT.json`` + ``OUT.md``:

* instructions per ``Policy.predict_chunk`` (preprocess + network + unnormalize, after one warm-up),
  with the share of SDOT/UDOT (int8 dot products), FMLA (fp32) and fp16 vector instructions;
* start-up instructions: building the runner (runtime import, checksum, graph read + compile) and the
  first (warm-up) inference;
* accuracy of the aarch64 chunks vs the x86 ``cpu_fp32`` reference on the same held-out
  observations, in normalized action units (σ of the dataset): relative L2 and per-joint bias;
* an estimated Pi 5 latency from the counts, with the assumptions written next to it.

Emulated wall time means nothing (QEMU emulates float arithmetic in software): only counts are
reported. Usage (host, x86; the rig must be set up, see its README)::

    ARM_RIG=/path/to/arm_rig python benchmarks/pi5_proxy.py BUNDLE \\
        --runners cpu_int8,onnx_fp32,openvino_f32:act_fp32.onnx --observations 1 --out benchmarks/pi5_proxy

Runner names: any backend of ``act_policy.backends.BACKENDS`` (e.g. ``openvino_fp16``);
``openvino_f32:GRAPH`` / ``openvino_f16:GRAPH`` (that backend compiling another graph file of the
bundle folder, e.g. the QDQ ``act_int8.onnx`` or the NNCF INT8 IR that ``--nncf-samples N`` writes
first); ``executorch:FILE.pte`` (an ExecuTorch program with the XNNPACK delegate in the bundle folder);
``litert:FILE.tflite`` (a LiteRT model in the bundle folder, interpreter with XNNPACK);
extra guest packages (aarch64 wheels of OpenVINO, ExecuTorch, ai-edge-litert) go on ``ARM_EXTRA_PYTHONPATH``.
The guest side of this script is the same file run under the emulator with ``--guest``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout, on the host and in the guest alike
    sys.path.insert(0, str(REPO))

from act_policy.backends import Backend, BackendOptions, ModelInputs, create_backend  # noqa: E402
from act_policy.core.artifacts import PolicyArtifacts  # noqa: E402
from act_policy.core.errors import BackendError  # noqa: E402
from act_policy.core.policy import Policy, load_artifacts  # noqa: E402
from act_policy.export.bundle import read_policy_document, verified_file  # noqa: E402
from act_policy.export.fidelity import compare, held_out_observations  # noqa: E402
from act_policy.export.onnx_export import flat_inputs  # noqa: E402

REFERENCE = "cpu_fp32"
NNCF_GRAPH = "act_nncf_int8.xml"  # --nncf-samples: made by make_nncf_int8, not part of the bundle's record
# Guest marks: 2i+1 / 2i+2 around counted inference i; these three around start-up (below 1000 = counted).
MARK_START, MARK_BUILT, MARK_WARM = 1000, 1001, 1002

# Estimate of Pi 5 latency from instruction counts. The Pi 5's Cortex-A76 runs at 2.4 GHz. IPC
# (instructions per cycle) is assumed 2.0 for these kernels: the A76 decodes 4 instructions per
# cycle and has two 128-bit SIMD pipes (SDOT and FMLA each issue 2 per cycle), so a GEMM inner loop
# of SIMD multiply-accumulates plus loads retires close to 2 per cycle when its data is in cache;
# packing, requantization and Python code run lower. The ±30 % band covers IPC 1.5–2.6 and the
# method's own ±30 % (README of the rig). Threads: counts are one thread; 3 threads (the launch
# default) are assumed 2.5× faster — not measured (the emulator cannot measure scaling).
A76_HZ = 2.4e9
ASSUMED_IPC = 2.0
BAND = 0.30
THREADS_SPEEDUP = {1: 1.0, 3: 2.5}


# --- guest side (aarch64, under the emulator) ----------------------------------------------------

def openvino_runner(kind: str, graph: str, artifacts: PolicyArtifacts, options: BackendOptions) -> Backend:
    """The ``openvino_fp16`` / ``openvino_fp32`` backend compiling another graph of the bundle folder (e.g. the
    QDQ act_int8.onnx, or NNCF_GRAPH): candidates measured here, not backends."""
    from act_policy.backends.openvino import OpenVinoFP16Backend, OpenVinoFP32Backend

    backend = {"openvino_f16": OpenVinoFP16Backend, "openvino_f32": OpenVinoFP32Backend}[kind]

    class Runner(backend):
        name = f"{kind}:{graph}"

        def graph_file(self, bundle: Path, document: dict[str, Any]) -> Path:
            return bundle / graph  # not necessarily among the bundle's checksummed files

    Runner.graph = graph

    return Runner(artifacts, options)


class ExecuTorchRunner(Backend):
    """An ExecuTorch program (.pte, XNNPACK delegate) in the bundle folder: a candidate runtime.

    Its Python runtime (``executorch.extension.pybindings._C``) links libtorch, so torch is
    imported first (as ExecuTorch's own ``portable_lib`` does)."""

    def __init__(self, artifacts: PolicyArtifacts, options: BackendOptions, program: str) -> None:
        import torch
        from executorch.extension.pybindings import _C

        super().__init__(artifacts, options)
        self.name = f"executorch:{program}"
        self.torch = torch
        self.module = _C._load_for_executorch(str(artifacts.source / program))

    def infer(self, inputs: ModelInputs) -> np.ndarray:
        tensors = [self.torch.from_numpy(np.ascontiguousarray(a)) for a in flat_inputs(inputs)]
        return self.module.forward(tensors)[0][0].numpy().astype(np.float32)


class LiteRtRunner(Backend):
    """A LiteRT (.tflite) model in the bundle folder on the LiteRT interpreter (XNNPACK by default)."""

    def __init__(self, artifacts: PolicyArtifacts, options: BackendOptions, model: str) -> None:
        from ai_edge_litert.interpreter import Interpreter

        super().__init__(artifacts, options)
        self.name = f"litert:{model}"
        self.interpreter = Interpreter(model_path=str(artifacts.source / model), num_threads=options.threads)
        self.interpreter.allocate_tensors()
        # litert-torch names the positional inputs args_0, args_1, ... in the module's argument order
        details = self.interpreter.get_input_details()
        self.inputs = sorted(details, key=lambda d: int(d["name"].rsplit("_", 1)[-1]))
        self.output = self.interpreter.get_output_details()[0]

    def infer(self, inputs: ModelInputs) -> np.ndarray:
        for detail, array in zip(self.inputs, flat_inputs(inputs), strict=True):
            self.interpreter.set_tensor(detail["index"], _to_tensor_type(array, detail))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])[0]
        scale, zero_point = self.output["quantization"]
        return ((out.astype(np.float32) - zero_point) * scale if scale else out).astype(np.float32)


def _to_tensor_type(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float input as the model's input tensor type (a fully INT8 model takes quantized inputs)."""
    dtype = detail["dtype"]
    scale, zero_point = detail["quantization"]
    if not scale:
        return array.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(array / scale) + zero_point, info.min, info.max).astype(dtype)


def make_runner(name: str, artifacts: PolicyArtifacts) -> Backend:
    options = BackendOptions(num_threads=1)
    kind, _, graph = name.partition(":")
    if kind == "litert":
        return LiteRtRunner(artifacts, options, graph)
    if kind == "executorch":
        return ExecuTorchRunner(artifacts, options, graph)
    if kind in ("openvino_f16", "openvino_f32"):
        if not graph:
            raise BackendError(f"runner {name!r}: say which bundle graph, e.g. {kind}:act_int8.onnx")
        return openvino_runner(kind, graph, artifacts, options)
    return create_backend(name, artifacts, options)


def guest(runner: str, bundle: Path, work: Path) -> None:
    """Run ``runner`` on the saved observations between armmark marks; save its chunks."""
    from armmark import mark  # the rig's marker (a no-op syscall on real hardware)

    artifacts = load_artifacts(bundle)
    saved = np.load(work / "observations.npz")
    count = int(saved["count"])
    observations = [{k.split("/", 1)[1]: saved[k] for k in saved.files if k.startswith(f"{i}/")}
                    for i in range(count)]
    mark(MARK_START)
    policy = Policy(artifacts, make_runner(runner, artifacts))  # imports the runtime, reads + compiles the graph
    mark(MARK_BUILT)
    policy.predict_chunk(observations[0])  # warm-up: first-run allocations and kernel selection
    mark(MARK_WARM)
    chunks = []
    for i, obs in enumerate(observations):
        mark(2 * i + 1)
        chunks.append(policy.predict_chunk(obs))
        mark(2 * i + 2)
    np.save(work / f"{safe(runner)}.npy", np.stack(chunks))
    (work / f"{safe(runner)}.describe.json").write_text(json.dumps(policy.describe(), default=str))


# --- host side -------------------------------------------------------------------------------------

def safe(runner: str) -> str:
    return runner.replace(":", "__").replace("/", "_")


def per_joint_bias(reference: np.ndarray, actual: np.ndarray, artifacts: PolicyArtifacts) -> list[float]:
    """Mean normalized error per joint (σ of the dataset) over all chunks and steps."""
    norm, name = artifacts.action_normalizer(), artifacts.spec.action.name
    diff = norm.normalize(name, actual).astype(np.float64) - norm.normalize(name, reference).astype(np.float64)
    return diff.reshape(-1, diff.shape[-1]).mean(axis=0).tolist()


def read_counts(path: Path, count: int) -> tuple[dict[str, float], dict[str, float]]:
    """From the armcount JSON lines: mean per-inference instruction counts by class (marks 2, 4, ...),
    and the start-up totals: ``build`` (runtime import + graph read + compile) and ``first_inference``."""
    marks = {line["label"]: line["delta"] for line in map(json.loads, path.read_text().splitlines())
             if line.get("event") == "mark"}
    deltas = [delta for label, delta in marks.items() if label < MARK_START and label % 2 == 0]
    if len(deltas) != count:
        raise RuntimeError(f"{path}: {len(deltas)} counted inferences, expected {count}")
    startup = {"build": float(marks[MARK_BUILT]["total"]), "first_inference": float(marks[MARK_WARM]["total"])}
    return {key: float(np.mean([d.get(key, 0) for d in deltas])) for key in deltas[0]}, startup


def reused_runners(path: Path, observations: int) -> dict[str, Any]:
    """Runners already in the report at ``path`` (none if it does not exist yet); it must have counted
    the same number of observations, or its accuracy figures would not compare."""
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    if report["observations"] != observations:
        sys.exit(f"pi5_proxy: {path} counted {report['observations']} observation(s), not {observations}: "
                 "drop --reuse or use another --out")
    return report["runners"]


def make_nncf_int8(bundle: Path, samples: int) -> str:
    """OpenVINO INT8 IR of the bundle's float graph by NNCF post-training quantization (MinMax ranges,
    fast bias correction), calibrated on the same synthetic observations as ``act-policy quantize``,
    with the nodes the bundle's ``cpu_int8`` recipe kept float (policy.json ``quantization.float_nodes``)
    in NNCF's ignored scope. Written beside the graphs as NNCF_GRAPH (+ .bin); returns its name."""
    import nncf
    import openvino as ov

    from act_policy.export import reference_policy
    from act_policy.export.calibration import calibration_observations

    document = read_policy_document(bundle)
    artifacts = load_artifacts(bundle)
    policy = reference_policy(artifacts)
    names = document["graphs"]["inputs"]
    feeds = [dict(zip(names, flat_inputs(policy.preprocess(o)), strict=True))
             for o in calibration_observations(None, artifacts.spec, artifacts.input_stats, samples)]
    model = ov.Core().read_model(verified_file(bundle, "act_fp32.onnx", document))
    # OpenVINO names an ONNX Conv/Gemm "<node>/WithoutBiases" and its bias Add "<node>"
    floats = document["quantization"]["float_nodes"]
    ignored = nncf.IgnoredScope(names=[n for f in floats for n in (f, f"{f}/WithoutBiases")], validate=False)
    quantized = nncf.quantize(model, nncf.Dataset(feeds), subset_size=samples, ignored_scope=ignored)
    ov.save_model(quantized, bundle / NNCF_GRAPH, compress_to_fp16=False)
    return NNCF_GRAPH


def run_in_emulator(rig: Path, runner: str, bundle: Path, work: Path) -> dict[str, Any]:
    counts_file = work / f"{safe(runner)}.jsonl"
    counts_file.unlink(missing_ok=True)
    env = {**os.environ, "ARM_COUNT_OUT": str(counts_file), "ARM_PROJECT": str(REPO), "ARM_NICE": "19"}
    started = time.monotonic()
    done = subprocess.run(["bash", str(rig / "run_arm.sh"), str(Path(__file__).resolve()), "--guest", runner,
                           str(bundle), "--work", str(work)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["(no stderr)"])[-1], "returncode": done.returncode}
    return {"emulation_s": round(time.monotonic() - started)}


def estimate_ms(instructions: float) -> dict[str, float]:
    one = instructions / (A76_HZ * ASSUMED_IPC) * 1e3
    return {f"{threads}_thread_ms": round(one / speedup, 1) for threads, speedup in THREADS_SPEEDUP.items()}


def host(args: argparse.Namespace) -> None:
    import onnxruntime

    rig = Path(args.rig or os.environ.get("ARM_RIG", "")).resolve()
    if not (rig / "run_arm.sh").is_file():
        sys.exit("pi5_proxy: set ARM_RIG (or --rig) to the arm rig folder holding run_arm.sh")
    artifacts = load_artifacts(args.bundle)
    work = args.work or Path(f"{args.out}.work")
    work.mkdir(parents=True, exist_ok=True)
    if args.nncf_samples:
        print(f"[pi5_proxy] NNCF INT8: calibrating on {args.nncf_samples} observations", file=sys.stderr, flush=True)
        make_nncf_int8(args.bundle, args.nncf_samples)
    if not args.runners:
        return
    observations = held_out_observations(artifacts, args.observations)
    np.savez(work / "observations.npz", count=len(observations),
             **{f"{i}/{k}": v for i, obs in enumerate(observations) for k, v in obs.items()})
    reference_policy = Policy(artifacts, create_backend(REFERENCE, artifacts, BackendOptions(num_threads=1)))
    reference = np.stack([reference_policy.predict_chunk(o) for o in observations])
    report: dict[str, Any] = {
        "bundle": str(args.bundle), "image": list(artifacts.spec.cameras[0].shape[1:]),
        "observations": len(observations), "threads": 1,
        "host": {"machine": platform.machine(), "onnxruntime": onnxruntime.__version__,
                 "load_average_1min": os.getloadavg()[0]},
        "reference": f"x86 {REFERENCE}",
        "estimate": {"a76_hz": A76_HZ, "ipc": ASSUMED_IPC, "band": BAND,
                     "threads_speedup": THREADS_SPEEDUP},
        "runners": {},
    }
    if args.baseline_count:
        report["baseline_instructions"] = args.baseline_count
        report["baseline_source"] = args.baseline_source
    previous = reused_runners(Path(f"{args.out}.json"), len(observations)) if args.reuse else {}
    for runner in args.runners.split(","):
        if runner in previous and "instructions" in previous[runner]:
            report["runners"][runner] = previous[runner]
            continue
        print(f"[pi5_proxy] {runner}: running under the emulator", file=sys.stderr, flush=True)
        load_before = os.getloadavg()[0]
        result = run_in_emulator(rig, runner, args.bundle, work)
        result["counted_by"] = {"command": " ".join(["python", *sys.argv]),
                                "host_load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)]}
        if "error" not in result:
            counts, startup = read_counts(work / f"{safe(runner)}.jsonl", len(observations))
            chunks = np.load(work / f"{safe(runner)}.npy")
            total = counts["total"]
            result.update({
                "describe": json.loads((work / f"{safe(runner)}.describe.json").read_text()),
                "instructions": total,
                "sdot_udot_share": counts.get("sdot_udot", 0) / total,
                "fmla_f32_share": counts.get("fmla_f32", 0) / total,
                "fp16_share": (counts.get("fp16_vec", 0) + counts.get("fcvt_f16", 0)) / total,
                "classes": counts,
                "startup_instructions": startup,
                "accuracy": {**compare(list(reference), list(chunks), artifacts),
                             "per_joint_bias_sigma": per_joint_bias(reference, chunks, artifacts)},
                "estimated_pi5": estimate_ms(total),
            })
        print(f"[pi5_proxy] {runner}: {result.get('instructions', result.get('error'))}", file=sys.stderr)
        report["runners"][runner] = result
        if args.reuse:  # another invocation with --reuse may have added runners meanwhile (parallel counting)
            report["runners"] = {**reused_runners(Path(f"{args.out}.json"), len(observations)), **report["runners"]}
        Path(f"{args.out}.json").write_text(json.dumps(report, indent=1) + "\n")
    named = args.runners.split(",")  # the report lists them in this order, then any others merged in
    report["runners"] = dict(sorted(report["runners"].items(),
                                    key=lambda item: named.index(item[0]) if item[0] in named else len(named)))
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=1) + "\n")
    Path(f"{args.out}.md").write_text(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    base = report["runners"].get(REFERENCE, {}).get("instructions") or report.get("baseline_instructions")
    h, w = report["image"]
    lines = [f"Image {h}×{w}, {report['observations']} held-out observation(s), 1 thread, Cortex-A76 (QEMU), "
             f"accuracy vs {report['reference']}."
             + (f" {REFERENCE} instructions: {report['baseline_source']}." if report.get("baseline_source") else ""),
             f"Estimated Pi 5 latency = instructions / ({A76_HZ / 1e9:.1f} GHz × IPC {ASSUMED_IPC}), ±{BAND:.0%}; "
             f"3 threads assumed {THREADS_SPEEDUP[3]}× faster than 1 (not measured). Emulated wall time is not "
             "a speed proxy and is not reported.", "",
             "| runner | M insn / inference | vs cpu_fp32 | SDOT/UDOT | FMLA f32 | fp16 | rel L2 norm | "
             "max \\|bias\\| σ | est. Pi 5 ms, 1 thread | est. 3 threads | start-up M insn: build / 1st inference |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["runners"].items():
        if "instructions" not in r:
            lines.append(f"| {name} | failed: {r['error']} ||||||||||")
            continue
        acc, est = r["accuracy"], r["estimated_pi5"]
        ratio = f"{base / r['instructions']:.2f}×" if base else "–"
        lines.append(f"| {name} | {r['instructions'] / 1e6:,.0f} | {ratio} | {r['sdot_udot_share']:.1%} | "
                     f"{r['fmla_f32_share']:.1%} | {r['fp16_share']:.1%} | {acc['rel_l2_normalized']:.2%} | "
                     f"{max(map(abs, acc['per_joint_bias_sigma'])):.3f} | {est['1_thread_ms']:.0f} | "
                     f"{est['3_thread_ms']:.0f} | {startup_cell(r)} |")
    lines += ["", "Counted by (host load average, 1 min, before → after the emulation):"]
    for name, r in report["runners"].items():
        if "counted_by" in r:
            before, after = r["counted_by"]["host_load_average_1min"]
            lines.append(f"* {name}: `{r['counted_by']['command']}` (load {before} → {after})")
    return "\n".join(lines) + "\n"


def startup_cell(result: dict[str, Any]) -> str:
    startup = result.get("startup_instructions")
    return f"{startup['build'] / 1e6:,.0f} / {startup['first_inference'] / 1e6:,.0f}" if startup else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path, help="deploy bundle folder (act-policy export / quantize)")
    parser.add_argument("--runners", default="cpu_int8,onnx_fp32,cpu_fp32",
                        help="comma-separated runner names ('' with --nncf-samples: only make that graph)")
    parser.add_argument("--observations", type=int, default=1, help="held-out observations counted (default 1)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "pi5_proxy",
                        help="report path without suffix (.json and .md are written)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default OUT.work)")
    parser.add_argument("--rig", type=Path, default=None, help="arm rig folder (default $ARM_RIG)")
    parser.add_argument("--reuse", action="store_true", help="keep runners already counted in OUT.json")
    parser.add_argument("--baseline-count", type=float, default=None,
                        help=f"{REFERENCE} instructions counted elsewhere, for the ratio column when "
                             f"{REFERENCE} is not among the runners (its fp32 emulation is the slowest)")
    parser.add_argument("--baseline-source", default=None, help="where --baseline-count was measured")
    parser.add_argument("--nncf-samples", type=int, default=0,
                        help=f"first write BUNDLE/{NNCF_GRAPH}: NNCF INT8 of the float graph calibrated on this "
                             f"many synthetic observations (host; needs nncf); runner e.g. openvino_f16:{NNCF_GRAPH}")
    parser.add_argument("--guest", metavar="RUNNER", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.guest:
        guest(args.guest, args.bundle, args.work)
    else:
        host(args)


if __name__ == "__main__":
    main()
