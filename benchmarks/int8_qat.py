"""INT8 study, fifth round: distillation quantization-aware fine-tuning (QAT) for ``cpu_int8``.

  python -m benchmarks.int8_qat BUNDLE --samples 32 --held-out 16 --train 128 --steps 100 --lr 3e-8 \
      --optimizer adam [--noise] --recipes T,R [--baseline] [--compare-ort] --out results.jsonl

(run from the repository root: it uses ``benchmarks/int8_recipe.py``'s ``Study``.) Results:
benchmarks/int8_recipe.md, section 8. Post-training recipes leave the u8 rounding of the activations as most
of ``cpu_int8``'s error (sections 5 and 7). Here the float network is fine-tuned to tolerate it: a *student*
copy of the prepared (batch-norm folded) ACT rounds its tensors in torch exactly where ONNX Runtime's QDQ
graph of recipe R rounds them (``benchmarks/int8_recipe.py``; the default of ``act-policy quantize`` in this
round, until section 9 kept the decoder's feed-forward in float too), and learns to reproduce the untouched
float network (the *teacher*) on synthetic calibration scenes:

* activations: u8 per tensor, the range of each tensor frozen from the float network on the calibration
  observations the way recipe R measures it (``mean-minmax``: the
  mean over observations of each one's min and max, widened to hold 0); a ReLU right after an INT8 layer is
  folded into that layer's range ``[0, max]`` (``fold_relu``). Places: the max-pool output, every BasicBlock's
  conv1 (ReLU folded), conv2 and downsample outputs and its output after the residual Add (ReLU folded), the
  feature projection's output, the state vector and its projection's output, and every transformer Linear's
  input and output (feed-forward linear1 with its ReLU folded). The backbone's first convolution, the
  transformer's residual Adds, LayerNorms, attention MatMuls/Softmax and the action head stay float, as in
  recipe R. ``test/test_qat.py`` checks that these are the INT8 graph's ranges, tensor for tensor;
* weights of those layers: s8 per output channel, symmetric (scale ``max|w| / 127``), recomputed from the
  current weights at every step;
* rounding: round half to even, gradients straight through inside the range and zero outside it
  (``torch.fake_quantize_per_tensor_affine`` / ``..._per_channel_affine``); or (``--noise``) the rounding
  replaced during training by uniform noise of one quantization step, the error's statistics rather than
  its exact pattern;
* loss: mean squared error between the student's and the teacher's normalized action chunks.

Only ResNet BasicBlock backbones (resnet18/34, LeRobot's default). The fine-tuned float weights are exported
(same graph, same node names) and quantized by the normal path
(:func:`act_policy.export.quantize.quantize_graph`, which measures its own ranges on them), then judged on
held-out scenes against the *original* float network, like every other recipe."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from act_policy.backends.base import ModelInputs, flat_inputs
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.backbone import FROZEN_BN_EPS, BasicBlock
from act_policy.core.errors import CheckpointError
from act_policy.core.model import ACT, Attention
from act_policy.export.bundle import ACTION_OUTPUT
from act_policy.export.onnx_export import Progress, WholeNetwork, check_parity, export_onnx

U8 = (0, 255)
S8_SYMMETRIC = (-127, 127)  # ONNX Runtime's range for symmetric s8 weights


class ActivationQuantizer(nn.Module):
    """u8 fake quantization of one activation tensor with a frozen range.

    While ``observing`` it records each call's min and max (one call = one observation when calibrating with
    batch 1); :meth:`freeze` sets scale and zero point from their means as ONNX Runtime does for u8
    (range widened to hold 0, ``scale = (max - min) / 255``, ``zero_point = round(-min / scale)``).
    ``relu``: the ReLU that follows is folded into this range (the output is clamped at 0 first).
    ``noise`` (set while training with ``QATSettings.noise``): instead of rounding, clamp to the range and add
    uniform noise of one step — the rounding error's statistics rather than its exact value.
    """

    def __init__(self, relu: bool = False) -> None:
        super().__init__()
        self.relu = relu
        self.observing = True
        self.enabled = False
        self.mins: list[float] = []
        self.maxs: list[float] = []
        self.scale = 1.0
        self.zero_point = 0
        self.noise = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu:
            x = F.relu(x)
        if self.observing:
            detached = x.detach()
            self.mins.append(float(detached.min()))
            self.maxs.append(float(detached.max()))
        if not self.enabled:
            return x
        if self.noise:  # rounding's error as uniform noise of one step, clamped to the range like the rounding
            low, high = (U8[0] - self.zero_point) * self.scale, (U8[1] - self.zero_point) * self.scale
            return x.clamp(low, high) + (torch.rand_like(x) - 0.5) * self.scale
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, *U8)

    def freeze(self) -> None:
        if not self.mins:
            raise CheckpointError("QAT: an activation quantizer saw no calibration observation")
        low, high = min(float(np.mean(self.mins)), 0.0), max(float(np.mean(self.maxs)), 0.0)
        self.scale = max((high - low) / (U8[1] - U8[0]), 1e-12)
        self.zero_point = int(np.clip(round(U8[0] - low / self.scale), *U8))
        self.observing, self.enabled = False, True


class WeightQuantizer(nn.Module):
    """s8 symmetric per-output-channel (dim 0) fake quantization of a weight: ONNX Runtime's weight rounding."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled = False

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return weight
        absmax = weight.detach().abs().reshape(weight.shape[0], -1).amax(1)
        scale = (absmax / S8_SYMMETRIC[1]).clamp_min(1e-12).float()
        zero = torch.zeros(weight.shape[0], dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, *S8_SYMMETRIC)


def _output_hook(quantizer: ActivationQuantizer, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    return quantizer(output)


def _input_hook(quantizer: ActivationQuantizer, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple:
    return (quantizer(args[0]), *args[1:])


def _quantized_project(attention: Attention, inputs: Sequence[ActivationQuantizer],
                       outputs: Sequence[ActivationQuantizer], x: torch.Tensor, which: int) -> torch.Tensor:
    return outputs[which](Attention.project(attention, inputs[which](x), which))


class FakeQuantACT(nn.Module):
    """A prepared :class:`ACT` with fake quantization at recipe R's INT8 places (module docstring).

    ``model`` is modified in place (hooks, weight parametrizations); :meth:`plain_weights` gives its weights
    back in the checkpoint's names. Quantizers start in observing mode: run :meth:`calibrate`, then forward
    passes are quantized.
    """

    def __init__(self, model: ACT) -> None:
        super().__init__()
        self.model = model
        self.activations = nn.ModuleDict()
        self.weights = nn.ModuleDict()
        c = model.spec.config
        relu_ffn = c.feedforward_activation == "relu"
        if model.spec.cameras:
            backbone = model.backbone
            if not all(isinstance(b, BasicBlock) for stage in self._stages() for b in stage):
                raise CheckpointError(f"QAT supports ResNet BasicBlock backbones (resnet18/34), not "
                                      f"{c.vision_backbone}")
            self._output(backbone.maxpool, "backbone.maxpool")
            for stage_name, stage in zip(("layer1", "layer2", "layer3", "layer4"), self._stages(), strict=True):
                for index, block in enumerate(stage):
                    prefix = f"backbone.{stage_name}.{index}"
                    self._layer(block.conv1, f"{prefix}.conv1", relu=True)
                    self._layer(block.conv2, f"{prefix}.conv2")
                    if block.downsample is not None:
                        self._layer(block.downsample[0], f"{prefix}.downsample")
                    self._output(block, f"{prefix}.add_relu", relu=True)
            self._layer(model.encoder_img_feat_input_proj, "encoder_img_feat_input_proj")
        for name in ("encoder_robot_state_input_proj", "encoder_env_state_input_proj"):
            if hasattr(model, name):
                self._layer(getattr(model, name), name, quantize_input=True)
        for part, layers in (("encoder", model.encoder.layers), ("decoder", model.decoder.layers)):
            for index, layer in enumerate(layers):
                prefix = f"{part}.{index}"
                attentions = [("self_attn", layer.self_attn)] + (
                    [("multihead_attn", layer.multihead_attn)] if part == "decoder" else [])
                for attn_name, attention in attentions:
                    self._attention(attention, f"{prefix}.{attn_name}")
                self._layer(layer.linear1, f"{prefix}.linear1", quantize_input=True, relu=relu_ffn)
                self._layer(layer.linear2, f"{prefix}.linear2", quantize_input=True)

    def _stages(self) -> list[nn.Sequential]:
        b = self.model.backbone
        return [b.layer1, b.layer2, b.layer3, b.layer4]

    def _quantizer(self, name: str, relu: bool = False) -> ActivationQuantizer:
        quantizer = ActivationQuantizer(relu)
        self.activations[name.replace(".", "/")] = quantizer
        return quantizer

    def _output(self, module: nn.Module, name: str, relu: bool = False) -> None:
        module.register_forward_hook(partial(_output_hook, self._quantizer(name, relu)))

    def _weight(self, module: nn.Module, parameter: str, name: str) -> None:
        quantizer = WeightQuantizer()
        self.weights[name.replace(".", "/")] = quantizer
        parametrize.register_parametrization(module, parameter, quantizer)

    def _layer(self, module: nn.Module, name: str, quantize_input: bool = False, relu: bool = False) -> None:
        """An INT8 Conv/Linear: s8 weights, u8 output (ReLU folded when ``relu``), u8 input if asked."""
        if quantize_input:
            module.register_forward_pre_hook(partial(_input_hook, self._quantizer(f"{name}.input")))
        self._weight(module, "weight", name)
        self._output(module, f"{name}.output", relu)

    def _attention(self, attention: Attention, name: str) -> None:
        """q/k/v projections (slices of ``in_proj_weight``, per-row scales) and ``out_proj``."""
        inputs = [self._quantizer(f"{name}.{p}.input") for p in "qkv"]
        outputs = [self._quantizer(f"{name}.{p}.output") for p in "qkv"]
        self._weight(attention, "in_proj_weight", f"{name}.in_proj")
        attention.project = partial(_quantized_project, attention, inputs, outputs)
        self._layer(attention.out_proj, f"{name}.out_proj", quantize_input=True)

    def forward(self, images: list[torch.Tensor], state: torch.Tensor | None = None,
                env_state: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(images, state, env_state)

    @torch.no_grad()
    def calibrate(self, batches: Iterator[list[torch.Tensor]]) -> int:
        """Measure every activation range on ``batches`` (flat inputs, batch 1 each), then quantize from now on.

        A quantizer that never ran (the decoder layer-0 self-attention and query projection, folded into
        constants by :meth:`ACT.prepare`) stays float, as it is in the exported graph. Returns the count of
        observations."""
        count = 0
        for flat in batches:
            self.model(*WholeNetwork(self.model).split(tuple(flat)))
            count += 1
        for quantizer in self.activations.values():
            if quantizer.mins:
                quantizer.freeze()
            else:
                quantizer.observing = False
        for quantizer in self.weights.values():
            quantizer.enabled = True
        return count

    def quantized_places(self) -> int:
        """Activation quantizers that round: 89 on a default-size ACT, the INT8 graph's 85 u8 tensors with each
        encoder layer's q and k projection inputs (one tensor, ``x + pos``) counted twice."""
        return sum(1 for q in self.activations.values() if q.enabled)

    def plain_weights(self, original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The student's float weights in the checkpoint's names (``original``'s), batch norms unfolded.

        The backbone's convolutions were folded with their frozen batch norms (scale ``s``, shift ``t``):
        a fine-tuned folded weight ``W'`` and bias ``b'`` go back as ``W'/s`` and a batch-norm bias ``b' + mean·s``
        with the batch norm's other statistics unchanged, so folding them again gives ``W'`` and ``b'``.
        """
        tuned = {}
        for name, value in self.model.named_parameters():
            tuned[name.replace("parametrizations.", "").replace(".original", "")] = value.detach().clone()
        weights = {}
        for name, value in original.items():
            if name in tuned:
                weights[name] = tuned[name]
                continue
            weights[name] = value.clone()
        for conv, bn in _conv_bn_pairs(original):
            scale = original[f"{bn}.weight"] * (original[f"{bn}.running_var"] + FROZEN_BN_EPS).rsqrt()
            weights[f"{conv}.weight"] = tuned[f"{conv}.weight"] / scale[:, None, None, None]
            weights[f"{bn}.bias"] = tuned[f"{conv}.bias"] + original[f"{bn}.running_mean"] * scale
        return weights


def _conv_bn_pairs(weights: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    """(conv, batch norm) name prefixes of the backbone, e.g. ``backbone.layer1.0.conv1`` / ``...bn1``."""
    pairs = []
    for name in weights:
        if name.startswith("backbone.") and name.endswith(".running_var"):
            bn = name.removesuffix(".running_var")
            conv = bn[:-3] + "conv" + bn[-1] if bn.rsplit(".", 1)[-1].startswith("bn") else bn[:-1] + "0"
            pairs.append((conv, bn))
    return pairs


@dataclass(frozen=True)
class QATSettings:
    """How long and how hard to fine-tune: ``steps`` steps of ``optimizer`` (``adam``, or ``sgd`` with momentum
    0.9) on ``batch`` observations at learning rate ``lr`` (cosine-decayed to 0), observations drawn with
    ``seed``; ``noise``: train on uniform rounding noise instead of the rounding (see ActivationQuantizer)."""

    steps: int
    lr: float = 3e-8  # section 8: larger steps diverge or move the float network more
    batch: int = 4
    seed: int = 0
    optimizer: str = "adam"
    noise: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1 or not self.lr > 0:
            raise CheckpointError(f"QAT settings: steps {self.steps}, batch {self.batch}, lr {self.lr}; expected "
                                  "positive numbers")
        if self.optimizer not in ("adam", "sgd"):
            raise CheckpointError(f"QAT settings: optimizer {self.optimizer!r}; expected 'adam' or 'sgd'")


@dataclass
class QATResult:
    """The fine-tuned float weights (checkpoint names) and what the fine-tuning did, in normalized action units."""

    weights: dict[str, torch.Tensor]
    record: dict[str, Any]


def stacked(inputs: Sequence[ModelInputs]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.concatenate(arrays)) for arrays in zip(*(flat_inputs(i) for i in inputs), strict=True)]


def _mse(student: FakeQuantACT, teacher_out: torch.Tensor, flat: list[torch.Tensor]) -> torch.Tensor:
    return F.mse_loss(student(*WholeNetwork(student.model).split(tuple(flat))), teacher_out)


def finetune(artifacts: PolicyArtifacts, inputs: Sequence[ModelInputs], settings: QATSettings,
             progress: Progress) -> QATResult:
    """Distillation QAT (module docstring) of ``artifacts``' weights on ``inputs`` (normalized network inputs).

    Returns the fine-tuned float weights and a record: settings, the fake-quant MSE against the
    teacher on ``inputs`` before and after (mean over observations, normalized units squared), and how far the
    fine-tuned *float* network moved from the teacher (relative L2 of the normalized chunks on ``inputs``).
    """
    from act_policy.backends.torch_fp32 import build_prepared_model

    torch.manual_seed(settings.seed)
    teacher = build_prepared_model(artifacts)
    student = FakeQuantACT(copy.deepcopy(teacher))
    flats = [stacked([i]) for i in inputs]
    with torch.no_grad():
        targets = [teacher(*WholeNetwork(teacher).split(tuple(f))) for f in flats]
    student.calibrate(iter(flats))

    def mean_loss() -> float:
        with torch.no_grad():
            return float(np.mean([_mse(student, t, f).item() for f, t in zip(flats, targets, strict=True)]))

    before = mean_loss()
    progress(f"QAT: {student.quantized_places()} u8 activation quantizers, {len(student.weights)} s8 weight tensors; "
             f"fake-quant MSE vs float on {len(flats)} observations before: {before:.3e}")
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer = (torch.optim.Adam(trainable, lr=settings.lr) if settings.optimizer == "adam"
                 else torch.optim.SGD(trainable, lr=settings.lr, momentum=0.9))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
    order = np.random.default_rng(settings.seed)
    student.train()
    for quantizer in student.activations.values():
        quantizer.noise = settings.noise
    started = time.perf_counter()
    for step in range(1, settings.steps + 1):
        chosen = order.choice(len(flats), size=min(settings.batch, len(flats)), replace=False)
        flat = [torch.cat([flats[i][k] for i in chosen]) for k in range(len(flats[0]))]
        loss = _mse(student, torch.cat([targets[i] for i in chosen]), flat)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step == 1:
            progress(f"QAT: gradient norm {torch.nn.utils.clip_grad_norm_(trainable, float('inf')).item():.3e}")
        optimizer.step()
        schedule.step()
        if step % max(1, settings.steps // 10) == 0 or step == settings.steps:
            progress(f"QAT step {step}/{settings.steps}: batch MSE {loss.item():.3e} "
                     f"({time.perf_counter() - started:.0f} s)")
    student.eval()
    for quantizer in student.activations.values():
        quantizer.noise = False
    after = mean_loss()
    weights = student.plain_weights(dict(artifacts.weights))
    tuned = dataclasses.replace(artifacts, weights=weights)
    moved = float_drift(build_prepared_model(tuned), flats, targets)
    progress(f"QAT: fake-quant MSE after: {after:.3e}; the fine-tuned float network is {moved * 100:.2f} % "
             "(normalized relative L2) from the original on the same observations")
    record = {"steps": settings.steps, "lr": settings.lr, "optimizer": settings.optimizer,
              "noise": settings.noise, "batch": settings.batch, "seed": settings.seed,
              "observations": len(flats), "fake_quant_mse_before": before, "fake_quant_mse_after": after,
              "float_drift_rel_l2_normalized": moved}
    return QATResult(weights, record)


@torch.no_grad()
def float_drift(model: ACT, flats: Sequence[list[torch.Tensor]], targets: Sequence[torch.Tensor]) -> float:
    """Relative L2 of ``model``'s normalized chunks against ``targets`` over ``flats``."""
    outputs = [model(*WholeNetwork(model).split(tuple(f))) for f in flats]
    difference = torch.cat(outputs) - torch.cat(list(targets))
    return float(difference.norm() / torch.cat(list(targets)).norm().clamp_min(1e-12))


def export_float_graph(artifacts: PolicyArtifacts, weights: dict[str, torch.Tensor], inputs: Sequence[ModelInputs],
                       path: Path, names: list[str]) -> None:
    """The whole-network float graph of ``weights`` (same structure and node names as ``act_fp32.onnx``) at
    ``path``, checked against torch on ``inputs``."""
    from act_policy.backends.torch_fp32 import build_prepared_model

    tuned = dataclasses.replace(artifacts, weights=weights)
    whole = WholeNetwork(build_prepared_model(tuned)).eval()
    flat = [flat_inputs(i) for i in inputs]
    export_onnx(whole, flat[0], names, ACTION_OUTPUT, path)
    check_parity(path, whole, flat[:3], names)


def _summary(errors: dict[str, Any]) -> dict[str, float]:
    return {"rel_l2_normalized_pct": round(errors["rel_l2_normalized"] * 100, 3),
            "max_abs_bias_sigma": round(errors["max_abs_bias_normalized"], 4),
            "max_joint_rms_sigma": round(max(j["rms"] for j in errors["per_joint"].values()), 4)}


def _simulated(study: Any, model: ACT, held_out: Sequence[ModelInputs]) -> list[np.ndarray]:
    """The student's normalized chunks on ``held_out``, ranges measured on the study's calibration scenes."""
    student = FakeQuantACT(model)
    student.calibrate(stacked([study.policy.preprocess(o)]) for o in study.calibration)
    with torch.no_grad():
        return [student(*WholeNetwork(model).split(tuple(stacked([i]))))[0].numpy() for i in held_out]


def main() -> None:
    import argparse
    import json
    import tempfile

    from act_policy.backends.torch_fp32 import build_prepared_model
    from act_policy.export.calibration import calibration_observations
    from act_policy.export.fidelity import compare, held_out_observations
    from act_policy.export.quantize import quantize_graph
    from benchmarks.int8_recipe import CANDIDATES, Study

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--samples", type=int, default=32, help="calibration scenes for the INT8 ranges (32)")
    parser.add_argument("--held-out", type=int, default=16, help="held-out scenes judged (16)")
    parser.add_argument("--train", type=int, default=0,
                        help="synthetic calibration-generator scenes to fine-tune on (default: the --samples ones)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--noise", action="store_true", help="train on uniform rounding noise, not the rounding")
    parser.add_argument("--recipes", default="T,R", help="int8_recipe.py CANDIDATES by letter (T,R,U,V)")
    parser.add_argument("--baseline", action="store_true", help="the same recipes on the original weights too")
    parser.add_argument("--compare-ort", action="store_true",
                        help="how far the student's INT8 error is from ONNX Runtime's recipe-T error")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines to append")
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:.0f} s] {message}", flush=True)

    def record(**fields: Any) -> None:
        fields.update(bundle=str(args.bundle), calibration=args.samples, held_out=args.held_out)
        with args.out.open("a") as f:
            f.write(json.dumps(fields) + "\n")
        progress(json.dumps(fields))

    study = Study(args.bundle, args.samples, args.held_out)
    recipes = {label[0]: recipe for label, recipe in CANDIDATES.items()}
    held_out = [study.policy.preprocess(o) for o in held_out_observations(study.artifacts, args.held_out)]
    action = study.artifacts.spec.action.name

    def judged(chunks: list[np.ndarray]) -> dict[str, float]:
        return _summary(compare(study.reference, [study.action.unnormalize(action, c) for c in chunks],
                                study.artifacts))

    original = build_prepared_model(study.artifacts)
    simulated = _simulated(study, copy.deepcopy(original), held_out)
    record(what="student (torch fake quant, recipe T) on the original weights", **judged(simulated))
    if args.compare_ort:
        with tempfile.TemporaryDirectory(dir=args.bundle) as tmp:
            graph = Path(tmp) / "t.onnx"
            quantize_graph(args.bundle / "act_fp32.onnx", graph, study.feeds, recipes["T"], args.samples, progress)
            import onnxruntime as ort

            session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
            onnx_runtime = np.array([session.run(None, f)[0][0] for f in study.held_out])
        with torch.no_grad():
            reference = np.array([original(*WholeNetwork(original).split(tuple(stacked([i]))))[0].numpy()
                                  for i in held_out])
        ours, theirs = np.array(simulated) - reference, onnx_runtime - reference
        scale = np.linalg.norm(reference)
        record(what="student vs ONNX Runtime recipe T (normalized, relative to the reference's norm)",
               student_error_pct=float(np.linalg.norm(ours) / scale * 100),
               onnx_runtime_error_pct=float(np.linalg.norm(theirs) / scale * 100),
               difference_pct=float(np.linalg.norm(ours - theirs) / scale * 100),
               error_correlation=float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]))
    if args.baseline:
        for letter in args.recipes.split(","):
            record(what=f"recipe {letter}, original weights", **_summary(study.quantized(recipes[letter], 1)))
    train = [study.policy.preprocess(o) for o in study.calibration]
    if args.train:
        spec, stats = study.artifacts.spec, study.artifacts.input_stats
        train = [study.policy.preprocess(o) for o in calibration_observations(None, spec, stats, args.train)]
    result = finetune(study.artifacts, train, QATSettings(args.steps, args.lr, args.batch,
                                                          optimizer=args.optimizer, noise=args.noise), progress)
    tuned = build_prepared_model(dataclasses.replace(study.artifacts, weights=result.weights))
    record(what="student (torch fake quant, recipe T) on the fine-tuned weights", qat=result.record,
           **judged(_simulated(study, tuned, held_out)))
    with tempfile.TemporaryDirectory(dir=args.bundle) as tmp:
        graph = Path(tmp) / "act_fp32_qat.onnx"
        export_float_graph(study.artifacts, result.weights, held_out, graph, study.names)
        record(what="fine-tuned float graph", **_summary(study.evaluate(graph, 1)))
        for letter in args.recipes.split(","):
            quantized = Path(tmp) / f"{letter}.onnx"
            quantize_graph(graph, quantized, study.feeds, recipes[letter], args.samples, progress)
            record(what=f"recipe {letter}, fine-tuned weights", qat=result.record,
                   **_summary(study.evaluate(quantized, 1)))


if __name__ == "__main__":
    main()
