"""Export the prepared (BN-folded, constants precomputed) ACT to ONNX and check it against torch.

Exporter choice, measured with torch 2.13: ``dynamo=False`` at opset 17 gives IR version 8,
which older ONNX parsers (Hailo's DFC) accept; its leftover Shape/Slice/Where nodes from
``scaled_dot_product_attention`` are folded away by ``onnxslim``. The result is a plain
Conv/Gemm/MatMul/Softmax/LayerNormalization graph with static shapes (speed vs torch: see
benchmarks/README.md). ``dynamo=True`` produces an equally clean graph but needs opset ≥ 18
and IR 10, and takes several times longer to export.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from act_policy.backends.base import ModelInputs, flat_inputs
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.errors import BackendError
from act_policy.core.model import ACT
from act_policy.export.bundle import ACTION_OUTPUT, FP32_GRAPH, HEAD_GRAPH, backbone_file, graph_input_names

log = logging.getLogger(__name__)

OPSET = 17
PARITY_ATOL = 1e-4  # outputs near 1 (normalized actions): as tight as float32 reordering allows
PARITY_RTOL = 1e-5  # of the largest output: ~80 float32 ulps, for graphs that carry large values
Progress = Callable[[str], None]


class WholeNetwork(nn.Module):
    """Flat positional inputs (cameras, state, env state) so ONNX inputs get one name each."""

    def __init__(self, model: ACT) -> None:
        super().__init__()
        self.model = model
        self.n_cameras = len(model.spec.cameras)
        self.has_state = model.spec.state is not None
        self.has_env = model.spec.env_state is not None

    def split(self, args: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], torch.Tensor | None,
                                                            torch.Tensor | None]:
        rest = list(args[self.n_cameras:])
        state = rest.pop(0) if self.has_state else None
        env = rest.pop(0) if self.has_env else None
        return list(args[:self.n_cameras]), state, env

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(*self.split(args))


class Backbone(nn.Module):
    """Normalized image (1, 3, H, W) → projected feature map (1, D, h, w): the NPU part."""

    def __init__(self, model: ACT) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encoder_img_feat_input_proj(self.model.backbone(image))


class Head(WholeNetwork):
    """Feature maps (one per camera) + state → normalized chunk: the CPU part of the hybrid path."""

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        maps, state, env = self.split(args)
        return self.model.head([m.flatten(2).transpose(1, 2) for m in maps], state, env)


def export_onnx(module: nn.Module, example: list[np.ndarray], names: list[str], output: str, path: Path) -> None:
    """Export, then simplify with onnxslim (constant folding, shape-noise removal)."""
    import onnx
    import onnxslim

    args = tuple(torch.from_numpy(a) for a in example)
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated in favour of dynamo=True; see the
        # module docstring for why it is still the right choice here.
        warnings.simplefilter("ignore", DeprecationWarning)
        # ACT.forward's image-size guard is Python logic on static shapes; tracing it as a constant is right.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(path), input_names=names, output_names=[output],
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    slim = onnxslim.slim(onnx.load(str(path)))
    onnx.checker.check_model(slim, full_check=True)
    onnx.save(slim, str(path))


@dataclass(frozen=True)
class Parity:
    """How far an ONNX graph's outputs are from torch's over the check examples.

    ``max_abs`` is in output units; ``max_rel`` divides it by ``scale``, the largest
    ``|torch output|`` seen, because float32 rounding grows with the values a graph carries.
    """

    max_abs: float
    max_rel: float
    scale: float

    def allowed(self, atol: float = PARITY_ATOL, rtol: float = PARITY_RTOL) -> float:
        return atol + rtol * self.scale


def check_parity(path: Path, module: nn.Module, examples: list[list[np.ndarray]], names: list[str],
                 atol: float = PARITY_ATOL, rtol: float = PARITY_RTOL) -> Parity:
    """Compare ONNX Runtime with torch over ``examples``; BackendError when
    ``max |onnx - torch| > atol + rtol · max |torch|`` (the message gives both errors)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst, scale = 0.0, 0.0
    for example in examples:
        with torch.inference_mode():
            expected = module(*(torch.from_numpy(a) for a in example)).numpy()
        actual = session.run(None, dict(zip(names, example, strict=True)))[0]
        worst = max(worst, float(np.abs(actual - expected).max()))
        scale = max(scale, float(np.abs(expected).max()))
    parity = Parity(worst, worst / scale if scale > 0 else worst, scale)
    if not worst <= parity.allowed(atol, rtol):
        raise BackendError(f"{path}: ONNX output differs from torch by {worst:.3g} absolute, {parity.max_rel:.3g} "
                           f"relative to the largest output {scale:.3g} (allowed {atol:g} + {rtol:g} x {scale:.3g} "
                           f"= {parity.allowed(atol, rtol):.3g}); the export is wrong, refusing to keep it")
    return parity


def export_graphs(model: ACT, artifacts: PolicyArtifacts, examples: list[ModelInputs], folder: Path,
                  progress: Progress) -> dict[str, object]:
    """Write the whole-network, backbone and head graphs; return the ``graphs`` section of policy.json.

    ``model`` must be prepared for the cameras' sizes; ``examples`` are normalized inputs used for
    the parity check of every file (see :func:`check_parity`).
    """
    spec = artifacts.spec
    names = graph_input_names(spec)
    flat = [flat_inputs(e) for e in examples]
    whole = WholeNetwork(model).eval()
    progress(f"exporting {FP32_GRAPH}")
    export_onnx(whole, flat[0], names, ACTION_OUTPUT, folder / FP32_GRAPH)
    errors = {FP32_GRAPH: check_parity(folder / FP32_GRAPH, whole, flat, names)}
    graphs: dict[str, object] = {"opset": OPSET, "inputs": names, "output": ACTION_OUTPUT, "fp32": FP32_GRAPH}
    if not spec.cameras:
        return {**graphs, **_parity_fields(errors)}

    backbone = Backbone(model).eval()
    by_camera: dict[str, str] = {}
    for index, camera in enumerate(spec.cameras):
        _, height, width = camera.shape
        name = backbone_file(height, width)
        by_camera[camera.name] = name
        if name in errors:
            continue
        progress(f"exporting {name}")
        images = [[f[index]] for f in flat]
        export_onnx(backbone, images[0], ["image"], "features", folder / name)
        errors[name] = check_parity(folder / name, backbone, images, ["image"])

    head = Head(model).eval()
    head_names = [f"{c.name}.features" for c in spec.cameras] + names[len(spec.cameras):]
    with torch.inference_mode():
        head_flat = [[backbone(torch.from_numpy(i)).numpy() for i in f[:len(spec.cameras)]] + f[len(spec.cameras):]
                     for f in flat]
    progress(f"exporting {HEAD_GRAPH}")
    export_onnx(head, head_flat[0], head_names, ACTION_OUTPUT, folder / HEAD_GRAPH)
    errors[HEAD_GRAPH] = check_parity(folder / HEAD_GRAPH, head, head_flat, head_names)
    graphs.update(backbones=by_camera, head=HEAD_GRAPH, head_inputs=head_names)
    return {**graphs, **_parity_fields(errors)}


def _parity_fields(errors: dict[str, Parity]) -> dict[str, dict[str, float]]:
    """policy.json's record of each graph's check: absolute and relative error per file."""
    return {"parity_max_abs": {name: p.max_abs for name, p in errors.items()},
            "parity_max_rel": {name: p.max_rel for name, p in errors.items()}}
