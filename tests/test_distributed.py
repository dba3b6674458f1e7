"""Issue 23: data-parallel training (glode/distributed.py): two CPU processes over gloo, launched
by torchrun, train the tiny encoder's span model to the same losses and weights as one process
with the same global batch. Issue 42: what only several processes show (parameters without
gradients, a process without sentences under a loss scaler, dropout per process, leaving
together, progress on rank 0 alone), from one torchrun launch of every scenario. Issue 38: the
gradients are averaged by DistributedDataParallel, and ``train.processes`` makes the training
stages relaunch themselves (the same metrics as one process, one error line for a failed
process, SIGTERM through every process)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from glode.cli import app
from glode.device import loss_scaler
from glode.distributed import init_from_env
from glode.errors import GlodeError
from glode.features import SentenceEncoder, attach_gold, collate
from glode.model import SpanModelConfig, build_model, save_model
from glode.progress import QUIET_ENV, progress
from glode.settings import DataSettings
from glode.steps.prepare import prepare_tables
from tests.dist_score import main as score_in_processes
from tests.dist_train import run_scenario
from tests.hang import hang_env, wait_for_hang
from tests.synthetic import all_words, write_corpus
from tests.tiny_encoder import build_tiny_encoder

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["O", "PER", "ORG", "LOC"]


def test_shards_partition_a_batch_with_its_spans(tmp_path):
    enc = build_tiny_encoder(tmp_path / "enc", words=all_words())
    _, tok = build_model(enc, SpanModelConfig(classes=CLASSES, max_span_len=3), seed=0)
    words = [["Anna", "lives", "in", "Berlin", "."], ["Ajax", "."], ["Eva", "Maria", "works", "."]]
    encoded = SentenceEncoder(tok, 3, 64).encode(words)
    batch = collate([attach_gold(e, [], {c: i for i, c in enumerate(CLASSES)}) for e in encoded], tok.pad_token_id)
    parts = [batch.shard(r, 2) for r in range(2)]
    assert [len(p.input_ids) for p in parts] == [2, 1]
    assert sum(len(p.span_sentence) for p in parts) == len(batch.span_sentence)
    torch.testing.assert_close(parts[0].input_ids, batch.input_ids[[0, 2]])
    assert parts[0].span_sentence.tolist() == [0] * len(encoded[0].span_word_start) + [1] * len(encoded[2].span_word_start)
    torch.testing.assert_close(parts[1].span_start, batch.span_start[batch.span_sentence == 1])
    assert batch.shard(3, 4) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(script_args: list[str], env: dict, processes: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "tests/dist_train.py")]
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *cmd[1:]]
    return subprocess.run([*cmd, *script_args], env=env, capture_output=True, text=True, timeout=600)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", QUIET_ENV)}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.slow
def test_two_gloo_processes_train_as_one_process(tmp_path):
    """Same global batch of 8 (2 x 4 sentences per process), masked LM on: the final epoch's
    losses agree within 1e-5 and every weight within 1e-4. Not exact: each process sums its own
    spans' losses and gloo adds the two halves' gradients, a different float32 summation order
    than one process's; Adam divides by the gradients' running RMS, so a weight whose gradient is
    near zero carries that rounding into its step (the weights' tolerance is looser for that
    reason). Dropout is off: its masks are drawn per process."""
    enc = build_tiny_encoder(tmp_path / "enc", words=all_words())
    env = _env(GLODE_QUIET="1")
    results, wall = {}, {}
    for name, processes in (("one process", 1), ("two gloo processes", 2)):
        out = tmp_path / name.replace(" ", "-")
        start = time.perf_counter()
        proc = _launch([str(enc), str(out), "equivalence"], env, processes)
        wall[name] = time.perf_counter() - start
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        out = out / "equivalence"
        results[name] = (json.loads((out / "result.json").read_text()), torch.load(out / "state.pt"))
    (one, w1), (two, w2) = results["one process"], results["two gloo processes"]
    assert (one["processes"], two["processes"]) == (1, 2)
    loss_gap = max(abs(a[k] - b[k]) for a, b in zip(one["history"], two["history"]) for k in ("loss_source", "loss_mlm"))
    weight_gap = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    print(f"\nlargest loss difference {loss_gap:.2e}, largest weight difference {weight_gap:.2e}\n" + " | ".join(f"{n}: final loss_source {r[0]['history'][-1]['loss_source']:.6f}, "
                            f"training {r[0]['seconds']:.2f} s, whole run {wall[n]:.2f} s" for n, r in results.items()))
    for a, b in zip(one["history"], two["history"]):
        for key in ("loss_source", "loss_mlm"):
            assert abs(a[key] - b[key]) < 1e-5, (key, a[key], b[key])
        assert a["steps"] == b["steps"]
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-4, rtol=0, msg=k)


# Issue 42: what only several processes show, from one torchrun launch of two gloo processes
# running every scenario of tests/dist_train.py (one start-up for all of them), each compared
# with the same scenario trained here as one process.
GLOO_SCENARIOS = ["no-grad", "scaler", "dropout", "dropout-rerun"]


@pytest.fixture(scope="module")
def gloo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gloo")
    enc = build_tiny_encoder(tmp / "enc", words=all_words())
    start = time.perf_counter()
    proc = _launch([str(enc), str(tmp / "two"), *GLOO_SCENARIOS], _env(), 2)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    print(f"\ntwo gloo processes, {len(GLOO_SCENARIOS)} scenarios: {wall:.1f} s")
    return {"enc": enc, "two": tmp / "two", "one": tmp / "one", "stderr": proc.stderr}


def _state(out: Path, name: str) -> dict:
    return torch.load(out / name / "state.pt")


def test_parameters_without_gradients_are_left_as_one_process_leaves_them(gloo):
    """With λ = 0 the masked-LM head gets no gradient, and the pooler never does: one process's
    AdamW skips them; two processes must too, bit for bit (a zero gradient would let weight decay
    shrink them), and the rest agree within the summation-order tolerance."""
    one = run_scenario("no-grad", gloo["enc"], gloo["one"])
    two = json.loads((gloo["two"] / "no-grad" / "result.json").read_text())
    assert (one["processes"], two["processes"]) == (1, 2)
    initial = build_model(gloo["enc"], SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=0)[0].state_dict()
    w1, w2 = _state(gloo["one"], "no-grad"), _state(gloo["two"], "no-grad")
    untouched = [k for k in w1 if torch.equal(w1[k], initial[k])]
    assert any(k.startswith("mlm_head.") for k in untouched) and any(k.startswith("encoder.pooler.") for k in untouched)
    assert [k for k in untouched if not torch.equal(w2[k], w1[k])] == []
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-4, rtol=0, msg=k)


def test_a_loss_scaler_steps_in_a_process_that_had_no_sentence_before_the_first_step(gloo):
    """fp16's loss scaler with global batch 1 and grad-accum 2: the second process never has a
    sentence, never scales a loss, and still unscales, clips and steps with the first (a
    scaler without a scale would assert there); the weights are one process's."""
    run_scenario("scaler", gloo["enc"], gloo["one"])
    w1, w2 = _state(gloo["one"], "scaler"), _state(gloo["two"], "scaler")
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-4, rtol=0, msg=k)


def test_a_loss_scaler_unscales_and_steps_before_any_loss_was_scaled():
    scaler = loss_scaler(torch.device("cpu"))
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.zeros(3)
    opt = torch.optim.AdamW([p], lr=0.1, weight_decay=0.0)
    scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 65536.0 and torch.equal(p.detach(), torch.ones(3))


def test_processes_draw_their_own_dropout_masks_and_a_rerun_repeats_them(gloo):
    """Two processes with equal shards (copies of one sentence), dropout 0.1: their first span
    dropout masks differ (each seeds dropout with seed + rank), and training again in the same
    processes gives the very same masks, losses and weights."""
    masks = {(n, r): torch.load(gloo["two"] / n / f"mask-rank{r}.pt") for n in ("dropout", "dropout-rerun") for r in (0, 1)}
    a, b = masks["dropout", 0], masks["dropout", 1]
    assert a.shape == b.shape and 0 < int(a.sum()) < a.numel()
    assert not torch.equal(a, b)
    for r in (0, 1):
        assert torch.equal(masks["dropout", r], masks["dropout-rerun", r])
    runs = [json.loads((gloo["two"] / n / "result.json").read_text())["history"] for n in ("dropout", "dropout-rerun")]
    assert runs[0] == runs[1]
    w, again = _state(gloo["two"], "dropout"), _state(gloo["two"], "dropout-rerun")
    assert all(torch.equal(w[k], again[k]) for k in w)


def test_every_process_waits_for_rank_0_then_leaves_the_process_group(gloo):
    """Rank 0 ends with a slow save (a second's sleep); the other process leaves only after it
    and, like rank 0, with the process group destroyed."""
    for r in (1, 0):
        assert json.loads((gloo["two"] / f"exit-rank{r}.json").read_text()) == {"rank0_done": True, "group_left": True}


def test_only_rank_0_shows_progress(gloo, monkeypatch):
    """The no-grad scenario trains with its progress bar on: one finished bar in the launch's
    log, not one per process; in-process, RANK other than 0 silences every bar."""
    finished = [line for line in gloo["stderr"].splitlines() if line.startswith("training:") and "100%" in line]
    assert len(finished) == 1, gloo["stderr"][-3000:]
    monkeypatch.delenv(QUIET_ENV, raising=False)
    for rank, shown in (("0", True), ("1", False)):
        monkeypatch.setenv("RANK", rank)
        bar = progress(range(3), desc="x", file=io.StringIO())
        assert bar.disable is not shown
        bar.close()


def test_a_cuda_process_takes_its_own_gpu_and_binds_the_group_to_it(monkeypatch):
    """No GPU here: what ``init_from_env`` asks of torch is recorded instead of done. On CUDA
    it makes the process's GPU current and binds the nccl group to it; on the CPU, gloo."""
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda **kw: calls.append(("init", kw)))
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    init_from_env(torch.device("cuda", 1))
    assert calls == [("set_device", torch.device("cuda", 1)), ("init", {"backend": "nccl", "device_id": torch.device("cuda", 1)})]
    calls.clear()
    init_from_env(torch.device("cpu"))
    assert calls == [("init", {"backend": "gloo"})]


# Issue 38: train.processes. The training stages relaunch themselves as N processes through
# torch's elastic launcher; no hand-typed torchrun line.
LAUNCH_HOOK = ROOT / "tests/launch_hook"  # its sitecustomize: dropout off, or a rank that fails


@pytest.fixture(scope="module")
def stage_workspace(tmp_path_factory) -> Path:
    """Prepared tables (24 source sentences) and a tiny encoder, for train_source runs."""
    root = tmp_path_factory.mktemp("stage")
    files = {name: write_corpus(root / f"{name}.txt", n, seed)
             for name, n, seed in (("source_train", 24, 1), ("source_dev", 6, 2), ("target_unlabelled", 12, 3),
                                   ("target_test", 4, 4))}
    prepare_tables(files, DataSettings(labels=CLASSES[1:]), root / "tables")
    build_tiny_encoder(root / "encoder", words=all_words())
    return root


def _train_source(root: Path, name: str, processes: int, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """The train_source stage as DVC runs it (its options from params.yaml's train section), into NAME/."""
    cmd = [sys.executable, str(ROOT / "stages/train_source.py"), "--target", "de", "--tables", "tables",
           "--encoder", "encoder", "--out", f"{name}/models/r0", "--logs", f"{name}/logs/r0", "--epochs", "3",
           "--batch-size", "8", "--lr", "1e-3", "--head-lr", "1e-2", "--device", "cpu", "--processes", str(processes)]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)


def _hook_env(**extra) -> dict:
    return _env(PYTHONPATH=os.pathsep.join([str(LAUNCH_HOOK), str(ROOT)]), GLODE_QUIET="1", **extra)


def test_train_processes_2_relaunches_the_stage_and_writes_one_process_metrics(stage_workspace):
    """``--processes 2`` (``train.processes: 2``, which dvc.yaml passes with the train section): the
    stage starts two gloo processes itself and writes the logs and model folder that one process
    writes, within the tolerance of ``test_two_gloo_processes_train_as_one_process`` (dropout is
    off in both runs: each process draws its own masks). Rank 0 alone prints the epoch lines."""
    env = _hook_env(GLODE_TEST_NO_DROPOUT="1")
    runs = {n: _train_source(stage_workspace, f"p{n}", n, env) for n in (1, 2)}
    for n, proc in runs.items():
        assert proc.returncode == 0, (n, proc.stdout[-2000:], proc.stderr[-4000:])
    assert [line.startswith("loss_source=") for line in runs[2].stdout.splitlines()].count(True) == 3
    one, two = (json.loads((stage_workspace / f"p{n}/logs/r0/metrics.json").read_text()) for n in (1, 2))
    assert one.keys() == two.keys() and {"loss_source", "loss_mlm", "dev_f1"} <= one.keys()
    print(f"\nlargest metric difference {max(abs(one[k] - two[k]) for k in one):.2e}: " + ", ".join(
        f"{k} {one[k]:.6f} / {two[k]:.6f}" for k in ("loss_source", "loss_mlm", "dev_f1")))
    for key in one:
        assert abs(one[key] - two[key]) < 1e-5, (key, one[key], two[key])
    assert one["dev_f1"] > 0  # the model learned something worth comparing
    w1, w2 = (load_file(stage_workspace / f"p{n}/models/r0/weights.safetensors") for n in (1, 2))
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-4, rtol=0, msg=k)


def test_a_failing_training_process_is_one_error_line_and_a_non_zero_exit(stage_workspace):
    """Rank 1 exits with status 3 as it starts; rank 0, waiting for it, is stopped by the launcher.
    The stage ends with status 1 and one line naming the failed process, no traceback, no output."""
    proc = _train_source(stage_workspace, "failed", 2, _hook_env(GLODE_TEST_FAIL_RANK="1"), timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("error: training process 1 of 2 (train.processes) exited with status 3; its own message is "
                    "above, and the other processes were stopped"), proc.stderr[-3000:]
    assert "rank 1 fails on purpose" in proc.stderr and "Traceback" not in proc.stderr
    assert not (stage_workspace / "failed").exists()


def _sigterm_when_held(cmd: list[str], cwd: Path, env: dict, marker: Path, what: str, role: str) -> None:
    """Run a 2-process stage until the hook holds it at ``what`` (tests/hang_hook), send SIGTERM to the
    stage, and check that it ends with 143 and one line saying its ``role`` processes were stopped."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_hang(proc, marker, 240, what)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == (f"terminated; the 2 {role} processes were stopped and removed their "
                                            "partial outputs"), err[-3000:]


def test_sigterm_stops_every_training_process_and_leaves_no_partial_output(stage_workspace, tmp_path):
    """Rank 0 is held just before it renames its finished log folder into place (tests/hang_hook);
    SIGTERM to the stage (what ``kill`` and job schedulers send) reaches every process through the
    launcher: the stage exits with 143 and one line, and no output, whole or partial, is left."""
    marker = tmp_path / "pid"
    env = hang_env(_env(PYTHONPATH=str(ROOT), GLODE_QUIET="1"), "stages/train_source.py:r0", marker)
    cmd = [sys.executable, str(ROOT / "stages/train_source.py"), "--target", "de", "--tables", "tables",
           "--encoder", "encoder", "--out", "killed/models/r0", "--logs", "killed/logs/r0", "--epochs", "1",
           "--batch-size", "8", "--device", "cpu", "--processes", "2"]
    _sigterm_when_held(cmd, stage_workspace, env, marker, "rank 0's log folder", "training")
    left = sorted(str(p.relative_to(stage_workspace)) for p in (stage_workspace / "killed").rglob("*"))
    assert left == ["killed/logs"], left  # the folder atomic_dir made for the logs, nothing in it


# Issue 38: the scoring stages and glode predict with train.processes / --processes. Each
# score_spans call splits the one-process batches over the processes and gathers them; rank 0
# writes what one process writes. Every run here has one OpenMP thread per process, so one
# process and two compute each batch with the same threads: the outputs are compared byte for byte.


def test_score_spans_in_two_processes_returns_what_one_process_returns(tmp_path):
    """tests/dist_score.py: three score_spans calls in a row (30 sentences of different lengths,
    some in windows, batch 4, with span features; 3 sentences in one batch, so the second process
    has none; no sentence) as two gloo processes under torchrun and as one process: the two run
    every other batch of one process's, and both return one process's probabilities and
    features, bit for bit."""
    enc = build_tiny_encoder(tmp_path / "enc", words=all_words())
    script = str(ROOT / "tests/dist_score.py")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each launched process has (OMP_NUM_THREADS=1)
    try:
        score_in_processes(str(enc), str(tmp_path / "one"))  # here, as one process
    finally:
        torch.set_num_threads(threads)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                          "127.0.0.1", "--master_port", str(_free_port()), script, str(enc), str(tmp_path / "two")],
                         env=_env(GLODE_QUIET="1"), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    ref = dict(np.load(tmp_path / "one/rank0.npz"))
    assert int(ref.pop("size")) == 1 and len(ref["probs0"]) > 100 and ref["features0"].shape[1] > 8
    batches = ref.pop("batches").tolist()
    assert batches[0] >= 8 and batches[1:] == [1, 0]
    shares = [dict(np.load(tmp_path / f"two/rank{rank}.npz")) for rank in (0, 1)]
    assert [s.pop("batches").tolist() for s in shares] == [[(batches[0] + 1) // 2, 1, 0], [batches[0] // 2, 0, 0]]
    for rank, got in enumerate(shares):
        assert int(got.pop("size")) == 2 and got.keys() == ref.keys()
        for key in ref:
            assert got[key].dtype == ref[key].dtype and got[key].shape == ref[key].shape, (rank, key)
            assert got[key].tobytes() == ref[key].tobytes(), (rank, key)


@pytest.fixture(scope="module")
def scoring_workspace(stage_workspace) -> Path:
    """stage_workspace with a random tiny span model saved as models/r0 (entities made common
    enough that decoding and the label table have work to do)."""
    model, tok = build_model(stage_workspace / "encoder", SpanModelConfig(classes=CLASSES, max_span_len=3,
                                                                          max_seq_len=24), seed=0)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, 0.6, 0.6, 0.6]))
    model.freeze_word_embeddings(True)
    save_model(model, tok, stage_workspace / "scoring/models/r0", stage_workspace / "encoder")
    return stage_workspace


SCORING_STAGES = {  # the stage's own options, as dvc.yaml passes them, writing into NAME/
    "pseudo_label": ["--round", "r1", "--prev", "r0", "--models", "scoring/models", "--out", "{name}/pseudo",
                     "--tables", "tables", "--encoder", "encoder", "--dim", "8", "--seed", "0"],
    "initial_labels": ["--model", "scoring/models/r0", "--tables", "tables", "--out", "{name}/labels.parquet",
                       "--metrics", "{name}/r0.json"],
    "evaluate": ["--model", "scoring/models/r0", "--metrics", "{name}/r0.json", "--test", "tables/target_test.parquet"],
}


def _score_stage(root: Path, stage: str, name: str, processes: int, env: dict, timeout: float = 300):
    cmd = [sys.executable, str(ROOT / f"stages/{stage}.py"), *(a.format(name=name) for a in SCORING_STAGES[stage]),
           "--batch-size", "4", "--device", "cpu", "--processes", str(processes)]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_scoring_stage_with_processes_2_writes_what_one_process_writes(scoring_workspace, tmp_path):
    """``--processes 2`` (``train.processes: 2``, which dvc.yaml passes to the scoring stages): the
    pseudo_label stage relaunches itself as two gloo processes, which split each scoring call's
    batches (target and source spans), and writes the very bytes one process writes: span table
    with probabilities, span vectors, manifest. Rank 0 alone prints the summary line; rank 1's
    throwaway copy of the folder (in TMPDIR) is gone afterwards. (initial_labels and evaluate run
    the same glue; that only rank 0 of them writes: test_only_rank_0_of_the_scoring_steps_writes.)"""
    stage = "pseudo_label"
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = _hook_env(TMPDIR=str(scratch))
    runs = {n: _score_stage(scoring_workspace, stage, f"{stage}-p{n}", n, env) for n in (1, 2)}
    for n, proc in runs.items():
        assert proc.returncode == 0, (n, proc.stdout[-2000:], proc.stderr[-4000:])
    assert runs[2].stdout.replace("-p2/", "-p1/") == runs[1].stdout and len(runs[1].stdout.splitlines()) == 1
    one, two = (_files(scoring_workspace / f"{stage}-p{n}") for n in (1, 2))
    assert len(one) >= 4 and one.keys() == two.keys()
    assert [k for k in one if one[k] != two[k]] == []
    assert list(scratch.iterdir()) == []


def test_only_rank_0_of_the_scoring_steps_writes(scoring_workspace, monkeypatch, tmp_path):
    """The initial_labels and evaluate steps compute everything in every process (their results
    are returned) but write their outputs on rank 0 alone; here this process is told it is rank 1
    of 2 (its scoring stays local: no sharded_scoring around it)."""
    import glode.distributed
    from glode.settings import DeviceSettings, EvaluateSettings
    from glode.steps.evaluate import evaluate_model
    from glode.steps.initial_labels import initial_labels

    ws, cpu = scoring_workspace, DeviceSettings(device="cpu")
    monkeypatch.setattr(glode.distributed, "current_world", lambda: glode.distributed.World(1, 2))
    s = initial_labels(ws / "scoring/models/r0", ws / "tables", tmp_path / "labels.parquet", tmp_path / "r0.json",
                       EvaluateSettings(), progress=False, device=cpu)
    assert s["label_rows"] > 0
    m = evaluate_model(ws / "scoring/models/r0", ws / "tables/target_test.parquet", tmp_path / "metrics.json",
                       EvaluateSettings(), progress=False, device=cpu)
    assert "f1" in m and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(glode.distributed, "current_world", lambda: glode.distributed.World(0, 2))
    evaluate_model(ws / "scoring/models/r0", ws / "tables/target_test.parquet", tmp_path / "metrics.json",
                   EvaluateSettings(), progress=False, device=cpu)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failing_scoring_process_is_one_error_line_and_a_non_zero_exit(scoring_workspace):
    """Rank 1 of an evaluate stage with --processes 2 exits with status 3 as it starts: the stage
    ends with status 1 and one line naming the scoring process and train.processes, no output."""
    proc = _score_stage(scoring_workspace, "evaluate", "failed-scoring", 2, _hook_env(GLODE_TEST_FAIL_RANK="1"),
                        timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: scoring process 1 of 2 (train.processes) exited with status 3; its own message is above, and the other "
        "processes were stopped"), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not (scoring_workspace / "failed-scoring").exists()


def test_sigterm_stops_every_scoring_process_and_leaves_no_partial_output(scoring_workspace, tmp_path):
    """Both processes of pseudo_label --processes 2 are held just before they rename their
    finished folders into place (rank 0's output, rank 1's throwaway copy: tests/hang_hook);
    SIGTERM to the stage: exit 143, one line, and neither the output nor any copy is left."""
    marker, scratch = tmp_path / "pid", tmp_path / "tmpdir"
    scratch.mkdir()
    env = hang_env(_env(PYTHONPATH=str(ROOT), GLODE_QUIET="1", TMPDIR=str(scratch)), "stages/pseudo_label.py:pseudo",
                   marker)
    cmd = [sys.executable, str(ROOT / "stages/pseudo_label.py"),
           *(a.format(name="killed-scoring") for a in SCORING_STAGES["pseudo_label"]), "--batch-size", "4",
           "--device", "cpu", "--processes", "2"]
    _sigterm_when_held(cmd, scoring_workspace, env, marker, "a pseudo_label folder", "scoring")
    assert [p.name for p in (scoring_workspace / "killed-scoring").iterdir()] == []
    assert list(scratch.iterdir()) == []


def test_glode_predict_with_processes_2_writes_what_one_process_writes(scoring_workspace, tmp_path):
    """``glode predict --processes 2`` (the console script, as a user runs it) relaunches itself as
    two processes and writes the bytes one process writes; standard input cannot be read by two
    processes and is refused before anything starts."""
    src = write_corpus(tmp_path / "in.conll", 24, seed=9)
    model = scoring_workspace / "scoring/models/r0"
    glode = Path(sys.executable).parent / "glode"
    runs = {}
    for n in (1, 2):
        out = tmp_path / f"p{n}.jsonl"
        runs[n] = subprocess.run([str(glode), "predict", str(src), "--model", str(model), "-f", "jsonl", "--gold",
                                  "--batch-size", "4", "--no-progress", "--device", "cpu", "--processes", str(n),
                                  "-o", str(out)], env=_hook_env(), capture_output=True, text=True, timeout=300)
        assert runs[n].returncode == 0, (n, runs[n].stderr[-3000:])
        assert len(runs[n].stderr.strip().splitlines()) == 1  # rank 0's summary line alone
    one, two = ((tmp_path / f"p{n}.jsonl").read_bytes() for n in (1, 2))
    assert one == two and one.count(b"\n") == 24 and b'"spans": [{"start"' in one
    with pytest.raises(GlodeError, match=r"--processes 2: every process reads INPUT, and standard input"):
        result = CliRunner().invoke(app, ["predict", "-", "--model", str(model), "--processes", "2"], input="Anna\n")
        raise result.exception
