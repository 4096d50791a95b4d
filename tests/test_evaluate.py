"""Streaming evaluation (irc.evaluate, `irc run` on files and folders) and Dask clusters.

The reference for every streamed or distributed result is the program's own
in-memory run (``prog.sweep`` / ``prog.run``) over the concatenated data, with
the same batch size: accuracy, predictions, scores and every statistic must
be exactly equal.  The encoding is Poisson, so a batch run at the wrong sample
offset would draw different spikes.
"""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import irc
from conftest import SAMPLES

DIGITS = os.path.join(SAMPLES, "digits")
T = [4, 8]
N = 48
BATCH = 16

try:
    import distributed  # noqa: F401
    HAVE_DASK = True
except ImportError:
    HAVE_DASK = False
needs_dask = pytest.mark.skipif(not HAVE_DASK, reason="dask.distributed is not installed")


@pytest.fixture(scope="module")
def digits():
    d = np.load(os.path.join(DIGITS, "test.npz"))
    return d["x"][:N], d["y"][:N]


@pytest.fixture(scope="module")
def programs():
    g = irc.load(os.path.join(DIGITS, "digits_cnn.onnx"))
    cal = np.load(os.path.join(DIGITS, "calibration.npz"))["x"]
    return {t: irc.compile(g, target=t, calibration=cal, timesteps=max(T), encoding="poisson")
            for t in ("spike-numpy", "spike-llvm")}


@pytest.fixture(scope="module")
def references(programs, digits):
    """One in-memory sweep per target over all the samples (batches of BATCH, as the streamed runs)."""
    x, _ = digits
    return {t: p.sweep(x, timesteps=T, batch_size=BATCH) for t, p in programs.items()}


def assert_same(result, reference, y):
    """The streamed/distributed result equals the in-memory run: accuracy, predictions and statistics."""
    assert [p.timesteps for p in result.points] == [r.timesteps for r in reference]
    for point, ref in zip(result.points, reference):
        pred = ref.scores.reshape(len(y), -1).argmax(axis=1)
        assert point.stats == ref.stats
        assert point.correct == int((pred == y).sum())
        np.testing.assert_array_equal(result.predictions[point.timesteps], pred)
    assert result.samples == len(y)


# ------------------------------------------------------------------ streaming
@pytest.mark.parametrize("target", ["spike-numpy", "spike-llvm"])
def test_memmapped_npy_streams_to_the_in_memory_result(tmp_path, programs, references, digits, target):
    x, y = digits
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    scores = tmp_path / "scores.npy"
    result = irc.evaluate(programs[target], str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"), timesteps=T,
                          batch_size=BATCH, scores_path=str(scores), progress=False)
    assert N > BATCH and result.batch_size == BATCH
    assert_same(result, references[target], y)
    np.testing.assert_array_equal(np.load(scores), references[target][-1].scores)
    assert programs[target].stats == references[target][-1].stats  # as after prog.run


def test_spike_llvm_result_does_not_depend_on_the_batching(programs, digits):
    """Event-driven code simulates each sample on its own: one batch of all or batches of 5, the same bits."""
    x, y = digits
    whole = programs["spike-llvm"].sweep(x, timesteps=T, batch_size=N)
    assert_same(irc.evaluate(programs["spike-llvm"], x, labels=y, timesteps=T, batch_size=5, progress=False), whole, y)


def test_an_iterable_of_uneven_batches(programs, references, digits):
    x, y = digits
    cuts = [0, 7, 30, 31, 40, N]
    batches = ((x[a:b], y[a:b]) for a, b in zip(cuts, cuts[1:]))
    result = irc.evaluate(programs["spike-numpy"], batches, timesteps=T, batch_size=BATCH, progress=False)
    assert_same(result, references["spike-numpy"], y)
    # inputs only, with the labels given apart
    result = irc.evaluate(programs["spike-llvm"], (x[a:b] for a, b in zip(cuts, cuts[1:])), labels=y,
                          timesteps=T, batch_size=BATCH, progress=False)
    assert_same(result, references["spike-llvm"], y)


def test_a_folder_of_shards_in_natural_order(tmp_path, programs, references, digits):
    """.npz shards (stored and compressed) of uneven sizes, labels inside; part2 comes before part10."""
    x, y = digits
    folder = tmp_path / "shards"
    folder.mkdir()
    np.savez(folder / "part1.npz", x=x[:10], y=y[:10])
    np.savez_compressed(folder / "part2.npz", x=x[10:37], y=y[10:37])
    np.savez(folder / "part10.npz", x=x[37:], y=y[37:])
    (folder / "README.txt").write_text("not a shard")
    result = irc.evaluate(programs["spike-llvm"], str(folder), timesteps=T, batch_size=BATCH, progress=False)
    assert_same(result, references["spike-llvm"], y)


def test_an_analog_program_streams_too(tmp_path, digits):
    x, y = digits
    prog = irc.compile(irc.load(os.path.join(DIGITS, "digits_cnn.onnx")), target="numpy")
    prog.save(str(tmp_path / "ann.ircp"))
    np.save(tmp_path / "x.npy", x)
    ref = prog.run(x, batch_size=BATCH)
    result = irc.evaluate(str(tmp_path / "ann.ircp"), str(tmp_path / "x.npy"), labels=y, batch_size=BATCH,
                          scores_path=str(tmp_path / "s.npy"), progress=False)
    assert result.points[0].timesteps is None
    assert result.accuracy == (ref.argmax(1) == y).mean()
    np.testing.assert_array_equal(result.predictions[None], ref.argmax(1))
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), ref)
    from irc.analysis import macs_per_sample

    assert result.stats == {"samples": N, "macs": N * macs_per_sample(prog.graph)}


# ------------------------------------------------------------------ bad inputs
def test_shards_of_mismatched_shapes_are_one_clear_error(tmp_path, programs, digits):
    x, y = digits
    np.save(tmp_path / "a.npy", x[:10])
    np.save(tmp_path / "b.npy", np.zeros((5, 1, 8, 9), np.float32))
    with pytest.raises(irc.IRCError, match=r"b\.npy: samples have shape \[1, 8, 9\], but .*a\.npy has samples of "
                                           r"shape \[1, 8, 8\]"):
        irc.evaluate(programs["spike-llvm"], str(tmp_path), progress=False)


def test_a_labels_file_of_the_wrong_length_is_refused_before_running(tmp_path, programs, digits):
    x, y = digits
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y[:-1])
    with pytest.raises(irc.IRCError, match=rf"y\.npy: {N - 1} labels for {N} samples"):
        irc.evaluate(programs["spike-numpy"], str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"),
                     progress=False)


def test_an_iterable_with_a_batch_of_another_shape(programs, digits):
    x, _ = digits
    batches = [x[:8], np.zeros((4, 1, 7, 8), np.float32)]
    with pytest.raises(irc.IRCError, match="batch 1 of the iterable"):
        irc.evaluate(programs["spike-llvm"], batches, batch_size=4, progress=False)


@needs_dask
def test_an_unreachable_scheduler_is_one_clear_error():
    from irc.distributed import connect

    with pytest.raises(irc.IRCError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        connect("tcp://127.0.0.1:9", timeout=1)


def irc_cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "irc.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.path.dirname(SAMPLES), **(env or {})}, cwd=cwd)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, programs, digits):
    d = tmp_path_factory.mktemp("art")
    programs["spike-llvm"].save(str(d / "snn.ircp"))
    np.save(d / "x.npy", digits[0])
    np.save(d / "y.npy", digits[1])
    return d


def test_cli_bad_inputs_are_one_line(artifact):
    np.save(artifact / "short.npy", np.zeros(N - 2, np.int64))
    r = irc_cli("run", artifact / "snn.ircp", "--input", artifact / "x.npy", "--labels", artifact / "short.npy")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"short.npy: {N - 2} labels for {N} samples" in r.stderr
    r = irc_cli("run", artifact / "snn.ircp", "--input", artifact / "x.npy", "--scheduler", "tcp://127.0.0.1:9",
                env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert ("cannot reach the Dask scheduler" if HAVE_DASK else "irc-compiler[cluster]") in r.stderr


def test_without_dask_the_cluster_flags_say_how_to_install_it(artifact):
    code = ("import sys; sys.modules['distributed'] = None; from irc.cli import main; "
            f"sys.exit(main(['run', {str(artifact / 'snn.ircp')!r}, '--input', {str(artifact / 'x.npy')!r}, "
            "'--workers', '2']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.path.dirname(SAMPLES)})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert 'pip install "irc-compiler[cluster]"' in r.stderr


# -------------------------------------------------------------------- progress
def test_progress_when_piped_is_periodic_lines_and_quiet_is_silent(artifact):
    args = ["run", artifact / "snn.ircp", "--input", artifact / "x.npy", "--batch-size", "4", "--no-analog"]
    r = irc_cli(*args, env={"IRC_PROGRESS_INTERVAL": "0.01"})
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if "samples" in line]
    assert len(lines) >= 2 and "\r" not in r.stderr
    assert lines[-1].startswith(f"simulating {max(T)} steps: {N}/{N} samples (100%)")
    r = irc_cli(*args, "--quiet", env={"IRC_PROGRESS_INTERVAL": "0.01"})
    assert r.returncode == 0 and r.stderr == ""


def test_progress_lines_come_every_interval():
    import io

    from irc.progress import Progress

    out = io.StringIO()
    with Progress("work", total=3, stream=out, interval=0.05) as bar:
        for _ in range(3):
            time.sleep(0.06)
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and "\r" not in out.getvalue()
    assert lines[-1].startswith("work: 3/3 samples (100%)")
    quiet = io.StringIO()
    with Progress("work", total=3, stream=quiet, enabled=False) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


# ----------------------------------------------------------------------- dask
@pytest.fixture(scope="module")
def cluster():
    if not HAVE_DASK:
        pytest.skip("dask.distributed is not installed")
    import logging

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      silence_logs=logging.ERROR) as lc, Client(lc) as client:
        client.wait_for_workers(2)
        yield client


@needs_dask
@pytest.mark.parametrize("target", ["spike-numpy", "spike-llvm"])
def test_two_worker_processes_give_the_local_result(tmp_path, cluster, programs, references, digits, target):
    x, y = digits
    np.save(tmp_path / "x.npy", x)
    result = irc.evaluate(programs[target], str(tmp_path / "x.npy"), labels=y, timesteps=T, batch_size=BATCH,
                          client=cluster, progress=False)
    assert result.workers == 2 and not result.reruns
    assert_same(result, references[target], y)


@needs_dask
def test_batches_shipped_from_an_iterable(cluster, programs, references, digits):
    x, y = digits
    result = irc.evaluate(programs["spike-llvm"], ((x[i:i + 10], y[i:i + 10]) for i in range(0, N, 10)),
                          timesteps=T, batch_size=BATCH, client=cluster, progress=False)
    assert_same(result, references["spike-llvm"], y)


@needs_dask
@pytest.mark.slow
def test_a_worker_killed_mid_run_has_its_batches_rerun(tmp_path, cluster, programs, digits):
    """SIGKILL a worker process while it holds a batch: the scheduler reruns it elsewhere, the result is
    whole and identical, and the run says which samples were rerun."""
    x, y = digits
    prog = programs["spike-numpy"]
    np.save(tmp_path / "x.npy", x)
    reference = prog.sweep(x, timesteps=[24], batch_size=8)  # batches of ~0.3 s: time to kill one
    pids = cluster.run(os.getpid)
    killed = []

    def kill_one_busy_worker():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            for address, keys in cluster.processing().items():
                if any(str(k).startswith("irc-batch") for k in keys) and address in pids:
                    os.kill(pids[address], signal.SIGKILL)
                    killed.append(address)
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_busy_worker)
    killer.start()
    result = irc.evaluate(prog, str(tmp_path / "x.npy"), labels=y, timesteps=[24], batch_size=8, client=cluster,
                          progress=False)
    killer.join()
    assert killed
    assert result.reruns and all(r.times >= 1 for r in result.reruns)
    assert_same(result, reference, y)
    cluster.wait_for_workers(2)  # the nanny restarts it


@needs_dask
@pytest.mark.slow
def test_cli_on_a_local_cluster_prints_the_local_table(artifact):
    args = ["run", artifact / "snn.ircp", "--input", artifact / "x.npy", "--labels", artifact / "y.npy",
            "--timesteps", "4,8", "--batch-size", str(BATCH), "--quiet"]
    local = irc_cli(*args)
    dist = irc_cli(*args, "--workers", "2")
    assert local.returncode == 0 and dist.returncode == 0, dist.stderr
    assert "dask: 2 workers" in dist.stdout

    def table(out):
        return [line for line in out.splitlines() if line.split()[:1] in (["4"], ["8"])] + [
            line for line in out.splitlines() if line.startswith(("at T=", "firing rate"))]
    assert table(dist.stdout) == table(local.stdout) and len(table(local.stdout)) == 4
