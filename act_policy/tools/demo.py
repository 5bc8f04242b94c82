"""Run a policy on a synthetic arm and camera at a fixed control rate and report latency.

With no --checkpoint this is the embedded default: LeRobot's default-size ACT (ResNet18,
d=512, 4 encoder / 1 decoder layers, chunk 100) with seeded weights, a 6-joint arm and one
480x640 camera. No ROS, robot, network or checkpoint is needed; backends that run exported
graphs get the demo exported (and, for cpu_int8, calibrated) once into a bundle in the user's
cache ($XDG_CACHE_HOME/act_policy/demo, ~/.cache when unset), reused by later runs.

Each control tick calls ``select_action`` exactly as LeRobot's control loop does, so the
tick that refills the action queue waits for inference; the report counts those overruns.
(The ROS node avoids them: it infers ahead of the control loop, by default in a child process,
``inference_isolation: process``.)
"""

from __future__ import annotations

import argparse
import itertools
import time

from act_policy.backends import BACKENDS, BackendOptions, create_backend
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.diagnostics import RollingWindow, format_table
from act_policy.core.policy import Policy, load_artifacts
from act_policy.core.synthetic import DEMO_NAME, demo_artifacts, synthetic_observations
from act_policy.tools.options import add_backend_option_argument, parse_backend_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="LeRobot pretrained_model folder or deploy bundle (default: seeded demo)")
    parser.add_argument("--backend", default="cpu_fp32", choices=sorted(BACKENDS), help="inference backend")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of control (default 8)")
    parser.add_argument("--rate", type=float, default=30.0, help="control rate in Hz (default 30)")
    parser.add_argument("--n-action-steps", type=int, default=25,
                        help="actions executed per inferred chunk (default 25, so several inferences run)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: cores, max 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the demo weights and scene")
    add_backend_option_argument(parser)


def run(args: argparse.Namespace) -> int:
    if args.rate <= 0 or args.duration <= 0:
        raise SystemExit("--rate and --duration must be positive")
    extra = parse_backend_options(args.backend_option, [args.backend]).get(args.backend, {})
    t_load = time.perf_counter()
    artifacts = load_demo_artifacts(args)
    options = BackendOptions(num_threads=args.threads, extra=extra)
    policy = Policy(artifacts, create_backend(args.backend, artifacts, options),
                    n_action_steps=min(args.n_action_steps, artifacts.spec.config.chunk_size))
    load_s = time.perf_counter() - t_load
    try:
        return control_loop(args, artifacts, policy, options, load_s)
    finally:
        policy.close()


def load_demo_artifacts(args: argparse.Namespace) -> PolicyArtifacts:
    """The user's checkpoint, or the seeded default — as the cached demo bundle when the backend runs
    exported graphs (onnx_fp32, cpu_int8, hailo; see :mod:`act_policy.export.demo_bundle`)."""
    if args.checkpoint and args.checkpoint != DEMO_NAME:
        return load_artifacts(args.checkpoint)
    from act_policy.export.demo_bundle import BUNDLE_BACKENDS, demo_bundle

    if args.backend not in BUNDLE_BACKENDS:
        return demo_artifacts(seed=args.seed)
    return load_artifacts(demo_bundle([args.backend], seed=args.seed))


def control_loop(args: argparse.Namespace, artifacts: PolicyArtifacts, policy: Policy, options: BackendOptions,
                 load_s: float) -> int:
    """Tick at ``args.rate`` for ``args.duration`` seconds and print the latency report."""
    c = artifacts.spec.config
    cams = ", ".join(f"{f.name} {f.shape[1]}x{f.shape[2]}" for f in artifacts.spec.cameras)
    print(f"policy: {args.checkpoint or 'embedded demo (seeded weights)'}; backend {args.backend}, "
          f"{options.threads} threads; loaded in {load_s:.1f} s")
    print(f"model: {c.vision_backbone}, d={c.dim_model}, {c.n_encoder_layers} enc / {c.n_decoder_layers} dec, "
          f"chunk {c.chunk_size}, executing {policy.n_action_steps} per chunk; cameras: {cams}")

    # Render the synthetic scene before the timed loop (2 s of motion, then repeated) so the
    # loop measures the policy, not the camera simulator; warm up outside it too.
    scene = list(synthetic_observations(artifacts.spec, artifacts.input_stats, steps=int(2 * args.rate) + 1,
                                        seed=args.seed, dt=1.0 / args.rate))
    stream = itertools.cycle(scene)
    for obs in scene[:2]:
        policy.predict_chunk(obs)
    policy.reset()

    stages = {name: RollingWindow(10**6) for name in ("preprocess", "inference", "postprocess", "control tick")}
    period = 1.0 / args.rate
    overruns, n_ticks, n_inferences = 0, 0, 0
    start = time.perf_counter()
    deadline = start
    while deadline - start < args.duration:
        obs = next(stream)
        tick_start = time.perf_counter()
        policy.select_action(obs)
        tick_end = time.perf_counter()
        stages["control tick"].add((tick_end - tick_start) * 1e3)
        if policy.inferred_last_step:
            n_inferences += 1
            t = policy.last_times
            stages["preprocess"].add(t.preprocess_ms)
            stages["inference"].add(t.inference_ms)
            stages["postprocess"].add(t.postprocess_ms)
        n_ticks += 1
        deadline += period
        if tick_end > deadline:
            overruns += 1
            deadline = tick_end  # do not try to catch up with a burst of late ticks
        else:
            time.sleep(deadline - tick_end)
    elapsed = time.perf_counter() - start

    print()
    print(format_table([(name, window.summary()) for name, window in stages.items()]))
    print()
    print(f"control: {n_ticks} ticks in {elapsed:.1f} s = {n_ticks / elapsed:.1f} Hz achieved "
          f"(target {args.rate:g} Hz); {n_inferences} inferences; {overruns} ticks overran the "
          f"{period * 1e3:.1f} ms period, by design: as in LeRobot's loop, a refill tick waits for inference "
          "(the ROS node infers ahead)")
    return 0
