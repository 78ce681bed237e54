"""Training: distributed equals single-process, resume equals uninterrupted, checkpoints survive kills."""

import json
import os
import platform
import signal
import subprocess
import sys
import time

import pytest
import torch

from rvos.config import load_config
from rvos.engine import checkpoint as ckpt_module
from rvos.engine.checkpoint import last_checkpoint, load_state
from rvos.engine.machine import describe_machine, processor_name
from rvos.engine.run import train
from rvos.engine.trainer import HookBase, NonFiniteLoss
from rvos.errors import ConfigError, RvosError


def losses(run_dir):
    """{step: loss} from metrics.jsonl (the last line of a step wins)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            out[record["step"]] = record["loss"]
    return out


def rvos(*args, env=None):
    return [sys.executable, "-m", "rvos.cli", "-q", *args]


@pytest.mark.slow
def test_two_gloo_processes_take_the_same_steps_as_one(tmp_path, tiny_overrides):
    # every target pixel in the losses and no dropout: random points and dropout masks differ between one process and
    # two by nature
    overrides = [*tiny_overrides, "train.iterations=3", "train.checkpoint_period=0", "data.eval_split=none",
                 "model.loss.num_points=100000", "model.track.dropout=0"]
    single = train(load_config("vlm_tiny_synth", overrides), tmp_path / "single", progress=False)
    assert single["steps"] == 3
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "rvos.cli", "-q", "train", "--config", "vlm_tiny_synth", *overrides, "--out", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert run["processes"] == 2 and run["clips_per_process_step"] == 1 and run["effective_batch_size"] == 2
    a, b = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert a.keys() == b.keys() == {1, 2, 3}
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-4), (step, a, b)


@pytest.mark.slow
def test_resume_after_a_kill_reproduces_the_uninterrupted_run(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "train.iterations=8", "train.checkpoint_period=3", "data.eval_split=none"]
    train(load_config("vlm_tiny_synth", overrides), tmp_path / "full", progress=False)
    # the same run, killed (SIGKILL) once its step-3 checkpoint exists, then resumed
    proc = subprocess.Popen(rvos("train", "--config", "vlm_tiny_synth", *overrides, "--out", str(tmp_path / "cut")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while last_checkpoint(tmp_path / "cut") is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = last_checkpoint(tmp_path / "cut")
    assert ckpt is not None and load_state(ckpt)["step"] in (3, 6)
    summary = train(None, tmp_path / "cut", resume=True, progress=False)
    assert summary["steps"] == 8
    full, cut = losses(tmp_path / "full"), losses(tmp_path / "cut")
    assert full.keys() == cut.keys() == set(range(1, 9))
    for step in full:
        assert cut[step] == pytest.approx(full[step], rel=1e-5, abs=1e-6), step
    a = torch.load(last_checkpoint(tmp_path / "full") / "state.pt", weights_only=True)["optimizer"]["state"][0]
    b = torch.load(last_checkpoint(tmp_path / "cut") / "state.pt", weights_only=True)["optimizer"]["state"][0]
    torch.testing.assert_close(a["exp_avg"], b["exp_avg"], rtol=1e-4, atol=1e-6)


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, tiny_overrides, monkeypatch):
    overrides = [*tiny_overrides, "train.iterations=2", "train.checkpoint_period=1", "data.eval_split=none"]
    cfg = load_config("vlm_tiny_synth", overrides)
    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj, f, *a, **k):  # the second checkpoint dies halfway through writing its state
        calls["n"] += 1
        if calls["n"] == 2:
            with open(f, "wb") as fh:
                fh.write(b"half a state")
            raise KeyboardInterrupt("killed while saving")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ckpt_module.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", progress=False)
    ckpt = last_checkpoint(tmp_path / "run")
    assert ckpt.name == "step_0000001" and load_state(ckpt)["step"] == 1
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*")) == ["step_0000001"]


def test_a_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
        tmp_path, tiny_overrides, monkeypatch):
    from rvos.models.meta.vlm import VLMModel

    overrides = [*tiny_overrides, "train.iterations=6", "train.checkpoint_period=2", "data.eval_split=none"]
    real_loss = VLMModel.loss
    calls = {"n": 0}

    def loss(self, outputs, targets):
        calls["n"] += 1
        parts = real_loss(self, outputs, targets)
        if calls["n"] == 4:
            parts["video_mask_0"] = parts["video_mask_0"] * float("nan")
        return parts

    monkeypatch.setattr(VLMModel, "loss", loss)
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 3 .*video_mask_0=nan.*last good checkpoint"):
        train(load_config("vlm_tiny_synth", overrides), tmp_path / "run", progress=False)
    assert last_checkpoint(tmp_path / "run").name == "step_0000002"


def test_a_run_folder_is_not_overwritten_without_resume(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "train.iterations=1", "data.eval_split=none"]
    train(load_config("vlm_tiny_synth", overrides), tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(RvosError, match="already holds a run"):
        train(load_config("vlm_tiny_synth", overrides), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


def test_tiny_config_generates_its_data_trains_and_evaluates(tmp_path, tiny_overrides):
    class Steps(HookBase):  # a caller's hook runs after the run's own, at every step
        seen = []

        def after_step(self):
            self.seen.append((self.trainer.step, self.trainer.scalars["loss"]))

    summary = train(load_config("vlm_tiny_synth", [*tiny_overrides, "train.iterations=2"]), tmp_path / "run",
                    progress=False, hooks=[Steps()])
    assert [step for step, _ in Steps.seen] == [0, 1]
    assert (tmp_path / "data" / "synth.json").is_file()
    scores = json.loads((tmp_path / "run" / "eval" / "step_0000002" / "scores.json").read_text())
    assert 0 <= scores["J&F"] <= 1 and scores["missing"] == [] and summary["eval"]["J&F"] == scores["J&F"]
    assert (tmp_path / "run" / "tensorboard").is_dir()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/J&F" in r for r in records) and all("lr" in r for r in records if "loss" in r)
    # on a CPU each step's time in parts, which add up to the step's
    for r in (r for r in records if "loss" in r):
        parts = [r[f"{p}_seconds"] for p in ("data", "forward", "loss", "backward", "optimizer")]
        assert all(p >= 0 for p in parts) and sum(parts) <= r["step_seconds"]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["machine"] == describe_machine("cpu")  # the step times compare on the same processor only


def test_a_run_reads_clips_for_the_track_head_when_asked(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "train.iterations=2", "data.eval_split=none", "model.track.replay=64",
                 "data.track_clips=3"]
    train(load_config("sgmg_tiny_synth", overrides), tmp_path / "run", progress=False)
    # each step's 2 clips and the 2 x 3 read for the head, kept in the replay memory the checkpoint saves
    replay = load_state(last_checkpoint(tmp_path / "run"))["model"]["track_replay"]
    assert len(replay["tracks"]) == 2 * (2 + 2 * 3)
    with pytest.raises(ConfigError, match="data.track_clips.*none that reads them"):
        # conv-CLIP's head reading frame windows around its masks, which the clips' exact tracks do not have
        train(load_config("vlm_tiny_synth", [*overrides, "model.track.crop=12"]), tmp_path / "refused",
              progress=False)
    assert not (tmp_path / "refused" / "metrics.jsonl").exists()


def test_a_run_can_start_from_another_runs_weights(tmp_path, tiny_overrides):
    """train.init: the weights of a run (its last checkpoint) or a model folder start the new run (SgMg fine-tunes
    its image pre-training this way); with a zero learning rate the new run's weights are exactly those."""
    from rvos.engine.checkpoint import find_model, load_model
    from rvos.errors import CheckpointError

    overrides = [*tiny_overrides, "train.iterations=1", "data.eval_split=none"]
    train(load_config("vlm_tiny_synth", overrides), tmp_path / "first", progress=False)
    start, _ = load_model(find_model(tmp_path / "first"))
    train(load_config("vlm_tiny_synth", [*overrides, f"train.init={tmp_path / 'first'}", "train.lr=0"]),
          tmp_path / "second", progress=False)
    end, _ = load_model(find_model(tmp_path / "second"))
    # the weights (normalisation statistics, which are no weights, follow the data whatever the learning rate)
    assert all(torch.equal(v, dict(start.named_parameters())[k]) for k, v in end.named_parameters())
    with pytest.raises(CheckpointError, match="holds a 'vlm' model"):
        train(load_config("dshmp_tiny_synth", [*overrides, f"train.init={tmp_path / 'first'}"]), tmp_path / "third",
              progress=False)


def test_the_optimizer_is_fused_where_torch_supports_it_and_steps_as_the_per_tensor_loop_does():
    from rvos.engine.optim import build_optimizer

    tc = load_config("vlm_tiny_synth").train
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 1))
    model.parameter_group = lambda name: "head"
    loop = build_optimizer(model, tc)
    fused = loop.defaults["fused"]
    assert fused == (torch.__version__ >= "2.4")  # CPU parameters
    start = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(32, 8)

    def run(optimizer):
        for _ in range(5):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
        return [p.detach().clone() for p in model.parameters()]

    got = run(loop)
    with torch.no_grad():
        for p, s in zip(model.parameters(), start):
            p.copy_(s)
    reference = torch.optim.AdamW([{"params": g["params"], "lr": g["lr"], "weight_decay": g["weight_decay"]}
                                   for g in loop.param_groups], foreach=False)
    want = run(reference)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_machine_is_named_by_its_processor_cores_and_torch(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU\n")
    assert processor_name(cpuinfo) == f"Intel(R) Xeon(R) Gold 6338 CPU ({platform.machine()})"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")  # no model name (some ARM kernels)
    assert processor_name(cpuinfo) == (platform.processor() or platform.machine())
    name = describe_machine("cpu")
    assert name.startswith(processor_name()) and f"{os.cpu_count()} cores" in name and torch.__version__ in name
