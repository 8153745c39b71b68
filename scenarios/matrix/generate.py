#!/usr/bin/env python3
"""Write the benchmark matrix: every mode x unwrap x size x consumer count, once open loop
(latency without queueing) and once closed loop (throughput). `generate.py --check` exits 1
when the committed files differ from what this script writes (a CTest test runs it).

Latency runs busy-poll in the consumers (spin_us longer than the send interval) and in the
producer (run.producer_spin): the figure is the transport's, not the wake-up of an idle core.
Latency runs check one message in 16 (validation.every); throughput runs check and time one
in 250 (consumers.sync_every; every check is GPU work in the consumer's process, two GPU context
switches on a shared GPU): like a real consumer, the others are only queued on the GPU
stream, so the figure is not a chain of host round trips, and throughput counts the steady
state after the warm-up messages. Borrowing consumers release on the host (they leave no GPU
reads queued).

On one GPU shared by producer and consumers every hand-off between their processes' GPU work
is a GPU context switch (no MPS): the *_consumer_gpu_work variants make the consumer run GPU
work on every message (a checksum kernel, a stream-ordered release) to show that cost.

Throughput through the GPU pool at 64 MiB gets a 4 GiB pool, room for 64 messages in flight:
on a shared GPU, copy-out throughput grows with that depth (the GPU switches less often
between the producer's and the consumer's contexts). On the H100, one copying consumer got
389 GB/s with 4 messages in flight, 553 with 16, 608 with 64 and 604 with 256.

A message rate is part of a small message's latency: GPU work submitted after the GPU idled
(2 ms at 500 Hz) costs more to enqueue and to run (cuipc-bench gpu_signal/publish and
copy_4k_after_idle), so the 4 KiB pool borrow latency is also measured at 2 and 5 kHz
(the *_<rate>hz variants).

The *_buffers variants write the producer's tensors straight into pool buffers
(tensors.source "pool_buffer", cuipc_producer_buffer_alloc): the send publishes them with one
stream write and no copy, so a small message skips the copy's enqueue, and a large one leaves
the GPU's bandwidth to the consumers.

The *_mps variants run the shared-GPU cases of the GPU pool (borrow, copy) and of the default
mode under the CUDA Multi-Process Service ("gpu": {"mps": true}): the processes share the GPU
without a context switch per hand-off.

The *_mps_host_wait_0 variants queue the consumer's wait for the producer's copy on its GPU
stream at once (consumers.host_wait_us 0) instead of spinning the host for it first: under MPS
that wait costs no context switch, and the consumer's core is free.

The *_peer variants are the GPU pool cases with every consumer on GPU 1 and the producer on
GPU 0 (a 2-GPU host; skipped on one GPU): the tensor-parallel case, where consumers read the
producer's pool over the peer link, and copy-out lands in the consumer's own GPU."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = [("4kib", "4KiB", 4 << 10), ("1mib", "1MiB", 1 << 20), ("64mib", "64MiB", 64 << 20)]
CONSUMERS = [1, 4]
# (file tag, mode, unwrap): default mode stages device tensors through pinned host memory,
# so its consumers copy back up to the device; borrowing would hand them host memory.
MODES = [("pool", "cuda_ipc_pool", "borrow"), ("pool", "cuda_ipc_pool", "copy"),
         ("ipc", "cuda_ipc", "borrow"), ("ipc", "cuda_ipc", "copy"), ("default", "default", "copy")]
WHAT = {"cuda_ipc_pool": "GPU pool slice, one copy in by the producer",
        "cuda_ipc": "the tensor's own allocation exported (a fresh tensor a message, retained)",
        "default": "staged through the pinned host pool"}


def scenario(loop, tag, mode, unwrap, size_tag, size, nbytes, consumers):
    big = nbytes >= (64 << 20)
    name = f"{loop}_{tag}_{size_tag}_c{consumers}_{unwrap}"
    pool = {}
    if mode == "cuda_ipc_pool":
        pool["gpu_bytes"] = ("4GiB" if loop == "tput" else "1GiB") if big else "256MiB"
    elif mode == "default":
        pool["host_bytes"] = "1GiB" if big else "256MiB"
    s = {"name": name}
    consumers_obj = {"count": consumers, "unwrap": unwrap}
    if mode == "default":
        consumers_obj["copy_to"] = 0
    if loop == "lat":
        rate = 100 if big else 500
        # cuda_ipc retains every tensor it sent: bounded GPU memory for 64 MiB.
        iterations = 100 if (big and mode == "cuda_ipc") else (300 if big else 1000)
        consumers_obj["spin_us"] = int(2e6 / rate)
        run = {"iterations": iterations, "warmup_iterations": 20, "loop": "open", "rate_hz": rate,
               "producer_spin": True}
        how = f"open loop at {rate} Hz, busy-polling consumers: latency without queueing"
        validation = {"enabled": True, "every": 16}
    else:
        iterations = {4 << 10: 10000, 1 << 20: 5000}.get(nbytes, 1000)
        every = 250
        if mode == "cuda_ipc":  # a fresh allocation a message, retained: fewer of them
            iterations, every = (100 if big else 1000), 10
        consumers_obj["sync_every"] = every
        run = {"iterations": iterations, "warmup_iterations": 32}
        how = f"closed loop (back to back): throughput; one message in {every} checked and timed"
        validation = {"enabled": True, "every": every}
    s["description"] = (f"{mode} ({WHAT[mode]}): one {size} bf16 device tensor a message, "
                        f"{consumers} consumer(s), {unwrap}; {how}.")
    s["mode"] = mode
    if pool:
        s["pool"] = pool
    s["tensors"] = {"sizes": {"list": [size]}, "dtypes": ["bf16"], "location": "device"}
    s["consumers"] = consumers_obj
    s["run"] = run
    s["validation"] = validation
    return name, s


def consumer_gpu_work(loop, size_tag, size, nbytes):
    """The pool borrow case with a consumer that checks every message on the GPU and releases
    on its stream: a GPU context switch to the consumer and back per message."""
    name, s = scenario(loop, "pool", "cuda_ipc_pool", "borrow", size_tag, size, nbytes, 1)
    name += "_consumer_gpu_work"
    s["name"] = name
    s["description"] = s["description"].replace("checked and timed", "timed").rstrip(".") + (
        "; the consumer checksums every message on the GPU and releases on its stream.")
    s["consumers"]["release"] = "stream"
    s["validation"] = {"enabled": True}
    return name, s


def rate_variant(rate):
    """The 4 KiB pool borrow latency run at another open-loop rate (same duration, 2 s)."""
    name, s = scenario("lat", "pool", "cuda_ipc_pool", "borrow", "4kib", "4KiB", 4 << 10, 1)
    name += f"_{rate}hz"
    s["name"] = name
    s["description"] = s["description"].replace("at 500 Hz", f"at {rate} Hz")
    s["consumers"]["spin_us"] = int(2e6 / rate)
    s["run"]["rate_hz"] = rate
    s["run"]["iterations"] = 2 * rate
    return name, s


def buffers_variant(loop, unwrap, size_tag, size, nbytes, consumers, rate=None):
    """A GPU pool case with the tensors written into pool buffers (zero-copy produce)."""
    name, s = scenario(loop, "pool", "cuda_ipc_pool", unwrap, size_tag, size, nbytes, consumers)
    name += "_buffers"
    s["description"] = s["description"].replace(
        "GPU pool slice, one copy in by the producer",
        "the producer writes its tensors into GPU pool buffers: no copy in")
    if rate:
        name += f"_{rate}hz"
        s["description"] = s["description"].replace("at 500 Hz", f"at {rate} Hz")
        s["consumers"]["spin_us"] = int(2e6 / rate)
        s["run"]["rate_hz"] = rate
        s["run"]["iterations"] = 2 * rate
    s["name"] = name
    s["tensors"]["source"] = "pool_buffer"
    return name, s


def mps_variant(name, s):
    """The same case under MPS: one GPU shared without context switches between the processes."""
    s = dict(s)
    s["name"] = name + "_mps"
    s["description"] = s["description"].rstrip(".") + "; under MPS."
    s = {k: s[k] for k in ("name", "description", "mode")} | {"gpu": {"mps": True}} | {
        k: v for k, v in s.items() if k not in ("name", "description", "mode")}
    return s["name"], s


def peer_variant(loop, unwrap, size_tag, size, nbytes, consumers):
    """A GPU pool case with the consumers on GPU 1 and the producer on GPU 0."""
    name, s = scenario(loop, "pool", "cuda_ipc_pool", unwrap, size_tag, size, nbytes, consumers)
    name += "_peer"
    s["name"] = name
    s["description"] = s["description"].replace(
        f"{consumers} consumer(s)", f"{consumers} consumer(s) on GPU 1, the producer on GPU 0")
    s["consumers"]["devices"] = [1]
    if unwrap == "copy":  # onto the consumer's own GPU, as a tensor-parallel worker does
        s["consumers"]["copy_to"] = "consumer"
    return name, s


def render():
    out = {}
    for loop in ("lat", "tput"):
        for tag, mode, unwrap in MODES:
            for size_tag, size, nbytes in SIZES:
                for c in CONSUMERS:
                    name, s = scenario(loop, tag, mode, unwrap, size_tag, size, nbytes, c)
                    out[name + ".json"] = json.dumps(s, indent=2) + "\n"
    for loop, (size_tag, size, nbytes) in (("lat", SIZES[0]), ("tput", SIZES[2])):
        name, s = consumer_gpu_work(loop, size_tag, size, nbytes)
        out[name + ".json"] = json.dumps(s, indent=2) + "\n"
    for rate in (2000, 5000):
        name, s = rate_variant(rate)
        out[name + ".json"] = json.dumps(s, indent=2) + "\n"
    small, big = SIZES[0], SIZES[2]
    for args in (("lat", "borrow", *small, 1), ("lat", "borrow", *small, 1, 2000),
                 ("lat", "borrow", *small, 1, 5000), ("lat", "borrow", *big, 1),
                 ("tput", "borrow", *small, 1), ("tput", "copy", *big, 1),
                 ("tput", "copy", *big, 4)):
        name, s = buffers_variant(*args)
        out[name + ".json"] = json.dumps(s, indent=2) + "\n"
    for loop in ("lat", "tput"):
        for tag, mode, unwrap in MODES:
            if mode == "cuda_ipc":  # retains every tensor: its figures are not a deployment's
                continue
            for size_tag, size, nbytes in SIZES:
                for c in CONSUMERS:
                    name, s = mps_variant(*scenario(loop, tag, mode, unwrap, size_tag, size,
                                                    nbytes, c))
                    out[name + ".json"] = json.dumps(s, indent=2) + "\n"
        for size_tag, size, nbytes in (SIZES[0], SIZES[2]):
            name, s = mps_variant(*scenario(loop, "pool", "cuda_ipc_pool", "copy", size_tag, size,
                                            nbytes, 1))
            name += "_host_wait_0"
            s["name"] = name
            s["description"] = s["description"].rstrip(".") + (
                ", the consumer waiting for the producer's copy on its stream (host_wait_us 0).")
            s["consumers"]["host_wait_us"] = 0
            out[name + ".json"] = json.dumps(s, indent=2) + "\n"
        for unwrap in ("borrow", "copy"):
            for size_tag, size, nbytes in SIZES:
                for c in CONSUMERS:
                    name, s = peer_variant(loop, unwrap, size_tag, size, nbytes, c)
                    out[name + ".json"] = json.dumps(s, indent=2) + "\n"
    return out


def main():
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] and not check:
        print("usage: generate.py [--check]", file=sys.stderr)
        return 2
    files = render()
    present = {f for f in os.listdir(HERE) if f.endswith(".json")}
    if check:
        bad = sorted(present ^ set(files))
        bad += sorted(f for f in files if f in present and
                      open(os.path.join(HERE, f)).read() != files[f])
        for f in bad:
            print(f"scenarios/matrix/{f}: differs from generate.py (run scenarios/matrix/generate.py)",
                  file=sys.stderr)
        return 1 if bad else 0
    for f in present - set(files):
        os.remove(os.path.join(HERE, f))
    for f, text in files.items():
        with open(os.path.join(HERE, f), "w") as fh:
            fh.write(text)
    print(f"wrote {len(files)} scenarios to scenarios/matrix/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
