"""INT8 recipe study: per-group sensitivity and candidate recipes, error on held-out observations.

  python benchmarks/int8_recipe.py sensitivity BUNDLE --out benchmarks/int8_sensitivity_96x128.md
  python benchmarks/int8_recipe.py candidates BUNDLE --out benchmarks/int8_candidates_96x128.md

BUNDLE is a deploy bundle (``act-policy export``). Every graph is calibrated on ``--samples``
synthetic scenes (the calibration seed of act_policy.export.calibration) and judged on
``--held-out`` other scenes (act_policy.export.fidelity's held-out seed) against the float32
torch reference, with :func:`act_policy.export.fidelity.compare` — the numbers
``act-policy quantize`` and ``benchmark`` print.

``sensitivity``: for each group of :data:`act_policy.export.quantize.NODE_GROUPS`, the error
added by quantizing that group alone (everything else float), then by each stage of the ResNet
backbone alone. ``tensors``: the default recipe's graph with the weights INT8 and exactly one
activation tensor rounded to u8 (every other activation float), for every activation tensor — which
roundings the error comes from. ``candidates``: the recipes of :data:`CANDIDATES`, each with the ``act-policy
quantize`` options that produce it. Times are the wall time of one x86 ORT inference on this
(shared) machine, median of ``--runs``; the Pi 5 speed proxy is the A76 instruction count,
measured separately (benchmarks/int8_recipe.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from act_policy.export import load_bundle, reference_policy
from act_policy.export.bundle import FP32_GRAPH
from act_policy.export.calibration import calibration_observations
from act_policy.export.equalization import relus_next_to_producers
from act_policy.export.fidelity import compare, held_out_observations
from act_policy.export.onnx_export import flat_inputs
from act_policy.export.quantize import DEFAULT_RECIPE, NODE_GROUPS, Recipe, quantize_graph
from act_policy.tools.quantize import recipe_options

ALL = frozenset(NODE_GROUPS)
LEGACY_FLOAT = frozenset({"backbone_stem", "transformer_add", "action_head"})
STAGES = ("/backbone/layer1/", "/backbone/layer2/", "/backbone/layer3/", "/backbone/layer4/")
TRANSFORMER = ALL - {"backbone_stem", "backbone", "backbone_add"}
PERCENTILE = {"calibration": "percentile"}
CANDIDATES: dict[str, Recipe] = {
    "A legacy (before this study)": Recipe(LEGACY_FLOAT),
    "B A + percentile": Recipe(LEGACY_FLOAT, **PERCENTILE),
    "C A + percentile + bias correction": Recipe(LEGACY_FLOAT, bias_correction=True, **PERCENTILE),
    "D C + float input projections": Recipe(LEGACY_FLOAT | {"input_projections"}, bias_correction=True,
                                            **PERCENTILE),
    "E float transformer, INT8 backbone, percentile, bias correction":
        Recipe(TRANSFORMER | {"backbone_stem"}, bias_correction=True, **PERCENTILE),
    "F E + float backbone layer2": Recipe(TRANSFORMER | {"backbone_stem"}, ("/backbone/layer2/",),
                                          bias_correction=True, **PERCENTILE),
    "G float transformer, INT8 backbone, minmax, bias correction":
        Recipe(TRANSFORMER | {"backbone_stem"}, bias_correction=True),
    "H B + float backbone Adds": Recipe(LEGACY_FLOAT | {"backbone_add"}, **PERCENTILE),
    "I H + float input projections": Recipe(LEGACY_FLOAT | {"backbone_add", "input_projections"}, **PERCENTILE),
    "J float transformer and backbone Adds, percentile": Recipe(TRANSFORMER | {"backbone_stem", "backbone_add"},
                                                                **PERCENTILE),
    "K B with s8 activations": Recipe(LEGACY_FLOAT, activation_type="s8", **PERCENTILE),
    "L A with s8 activations": Recipe(LEGACY_FLOAT, activation_type="s8"),
    "M A + layer bias correction": Recipe(LEGACY_FLOAT, layer_bias_correction=True),
    "N A with mean-minmax ranges": Recipe(LEGACY_FLOAT, calibration="mean-minmax"),
    "O N + layer bias correction": Recipe(LEGACY_FLOAT, calibration="mean-minmax", layer_bias_correction=True),
    "R O + folded ReLUs": Recipe(LEGACY_FLOAT, calibration="mean-minmax", layer_bias_correction=True, fold_relu=True),
    "S R + equalization alpha 0.5": Recipe(LEGACY_FLOAT, calibration="mean-minmax", layer_bias_correction=True,
                                           fold_relu=True, equalization=frozenset({"backbone", "ffn"})),
    "T R without layer bias correction": Recipe(LEGACY_FLOAT, calibration="mean-minmax", fold_relu=True),
    "U R + GPTQ weight rounding": Recipe(LEGACY_FLOAT, calibration="mean-minmax", layer_bias_correction=True,
                                         fold_relu=True, weight_rounding="gptq"),
    "V T + GPTQ weight rounding": Recipe(LEGACY_FLOAT, calibration="mean-minmax", fold_relu=True,
                                         weight_rounding="gptq"),
}


def _quiet(_: str) -> None:
    pass


class Study:
    """A bundle, its calibration feeds and held-out reference chunks, shared by every graph evaluated."""

    def __init__(self, bundle: Path, samples: int, held_out: int) -> None:
        self.bundle = bundle
        self.artifacts = load_bundle(bundle)
        self.policy = reference_policy(self.artifacts)
        self.names = json.loads((bundle / "policy.json").read_text())["graphs"]["inputs"]
        self.samples = samples
        spec, stats = self.artifacts.spec, self.artifacts.input_stats
        self.calibration = list(calibration_observations(None, spec, stats, samples))
        self.held_out = [self.feed(o) for o in held_out_observations(self.artifacts, held_out)]
        self.reference = [self.policy.predict_chunk(o) for o in held_out_observations(self.artifacts, held_out)]
        self.action = self.artifacts.action_normalizer()

    def feed(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.names, flat_inputs(self.policy.preprocess(observation)), strict=True))

    def feeds(self) -> Any:
        return (self.feed(o) for o in self.calibration)

    def evaluate(self, graph: Path, runs: int) -> dict[str, Any]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        name = self.artifacts.spec.action.name
        chunks = [self.action.unnormalize(name, session.run(None, f)[0][0]) for f in self.held_out]
        times = []
        for i in range(runs):
            start = time.perf_counter()
            session.run(None, self.held_out[i % len(self.held_out)])
            times.append((time.perf_counter() - start) * 1e3)
        return {**compare(self.reference, chunks, self.artifacts), "x86_ms_1thread": float(np.median(times)),
                "graph_mb": graph.stat().st_size / 1e6}

    def quantized(self, recipe: Recipe, runs: int) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(dir=self.bundle) as tmp:
            graph = Path(tmp) / "candidate.onnx"
            start = time.perf_counter()
            quantize_graph(self.bundle / FP32_GRAPH, graph, self.feeds, recipe, self.samples, _quiet)
            took = time.perf_counter() - start
            return {**self.evaluate(graph, runs), "quantize_s": took}


def _row(label: str, r: dict[str, Any], extra: str = "") -> str:
    biases = [abs(j["bias"]) for j in r["per_joint"].values()]
    return (f"| {label} | {r['rel_l2_normalized'] * 100:.2f} % | {r['max_abs_bias_normalized']:.3f} | "
            f"{max(j['rms'] for j in r['per_joint'].values()):.3f} | {np.mean(biases):.3f} | "
            f"{r['rel_l2'] * 100:.2f} % | {r['x86_ms_1thread']:.0f} |{extra}")


HEADER = ("| {what} | rel L2 normalized | max abs bias (sigma) | max joint RMS (sigma) | mean abs bias (sigma) "
          "| rel L2 action units | x86 ms, 1 thread |{extra}\n|---|---|---|---|---|---|---|{sep}")


def sensitivity(study: Study, runs: int) -> list[str]:
    lines = [HEADER.format(what="group", extra="", sep="")]
    lines.append(_row("none quantized (act_fp32.onnx)", study.evaluate(study.bundle / FP32_GRAPH, runs)))
    lines.append(_row("all quantized", study.quantized(Recipe(frozenset()), runs)))
    for group, what in NODE_GROUPS.items():
        print(f"group {group}", flush=True)
        alone = study.quantized(Recipe(ALL - {group}), runs)
        lines.append(_row(f"only `{group}` INT8 ({what})", alone))
        print(lines[-1], flush=True)
    for stage in STAGES:  # the backbone's four stages one at a time (convolutions and residual Adds)
        others = (*(s for s in STAGES if s != stage), "/backbone/maxpool/")
        alone = study.quantized(Recipe(ALL - {"backbone", "backbone_add"}, others), runs)
        lines.append(_row(f"only backbone `{stage}` INT8", alone))
        print(lines[-1], flush=True)
    return lines


def activation_tensors(model: onnx.ModelProto) -> list[str]:
    """The float tensors a QDQ graph rounds to INT8 activations (those a QuantizeLinear reads, not weights)."""
    weights = {t.name for t in model.graph.initializer}
    return [n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in weights]


def with_only_rounded(model: onnx.ModelProto, keep: set[str], relu_outputs: set[str]) -> onnx.ModelProto:
    """A copy of QDQ ``model`` whose activations are float except ``keep``: every other activation's
    QuantizeLinear -> DequantizeLinear pair is removed and its readers read the float tensor. A folded
    ReLU's pair (its tensor in ``relu_outputs``) becomes a float Relu: its u8 clamp was the ReLU."""
    dropped = {n.output[0]: n.input[0] for n in model.graph.node
               if n.op_type == "QuantizeLinear" and n.input[0] in set(activation_tensors(model)) - keep}
    float_of = {n.output[0]: dropped[n.input[0]] for n in model.graph.node
                if n.op_type == "DequantizeLinear" and n.input[0] in dropped}
    relu = {t: f"{t}/float_relu" for t in set(float_of.values()) & relu_outputs}
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes = []
    for node in copy.graph.node:
        if node.output[0] in dropped or node.output[0] in float_of:
            continue
        for i, name in enumerate(node.input):
            if name in float_of:
                node.input[i] = relu.get(float_of[name], float_of[name])
        nodes.append(node)
        nodes += [onnx.helper.make_node("Relu", [out], [relu[out]]) for out in node.output if out in relu]
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


def tensors(study: Study, runs: int) -> list[str]:
    lines = [HEADER.format(what="u8 activation (weights s8 everywhere)", extra="", sep="")]
    with tempfile.TemporaryDirectory(dir=study.bundle) as tmp:
        graph, probe = Path(tmp) / "default.onnx", Path(tmp) / "probe.onnx"
        quantize_graph(study.bundle / FP32_GRAPH, graph, study.feeds, DEFAULT_RECIPE, study.samples, _quiet)
        model = onnx.load(str(graph))
        prepared = onnx.load(str(study.bundle / FP32_GRAPH), load_external_data=False)
        relus_next_to_producers(prepared)
        relu_outputs = {n.output[0] for n in prepared.graph.node if n.op_type == "Relu"}
        every = activation_tensors(model)
        for label, keep in [("every activation (the default recipe)", set(every)), ("none", set())] + [
                (f"only `{name}`", {name}) for name in every]:
            onnx.save(with_only_rounded(model, keep, relu_outputs), str(probe))
            lines.append(_row(label, study.evaluate(probe, runs)))
            print(lines[-1], flush=True)
    return lines


def candidates(study: Study, runs: int, names: list[str] | None) -> list[str]:
    lines = [HEADER.format(what="recipe", extra=" act-policy quantize options |", sep="---|")]
    for label, recipe in CANDIDATES.items():
        if names and label not in names:
            continue
        print(f"recipe {label}", flush=True)
        r = study.quantized(recipe, runs)
        lines.append(_row(label, r, f" `{' '.join(recipe_options(recipe))}` |"))
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=("sensitivity", "tensors", "candidates"))
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--samples", type=int, default=64, help="calibration observations (default 64)")
    parser.add_argument("--held-out", type=int, default=8, help="held-out observations (default 8)")
    parser.add_argument("--runs", type=int, default=5, help="timed x86 runs per graph (default 5)")
    parser.add_argument("--only", action="append", default=None, help="candidate label (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="markdown table to write")
    args = parser.parse_args()
    study = Study(args.bundle, args.samples, args.held_out)
    lines = (sensitivity(study, args.runs) if args.study == "sensitivity" else tensors(study, args.runs)
             if args.study == "tensors" else candidates(study, args.runs, args.only))
    spec = study.artifacts.spec
    camera = spec.cameras[0].shape
    head = [f"<!-- python benchmarks/int8_recipe.py {args.study} {args.bundle} --samples {args.samples} "
            f"--held-out {args.held_out} -->",
            f"{spec.cameras[0].name} {camera[1]}x{camera[2]}, {args.samples} calibration scenes, {args.held_out} "
            "held-out scenes; errors vs the float32 torch reference in normalized action units (sigma).", ""]
    args.out.write_text("\n".join(head + lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
