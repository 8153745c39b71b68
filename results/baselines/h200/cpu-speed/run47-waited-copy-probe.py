#!/usr/bin/env python3
"""Does a waited 4 KiB copy cost more in a process with torch's CUDA started? Probe: the primary
context's flags and the p50 of (copy 4 KiB pinned <-> device on a non-blocking stream +
cudaStreamSynchronize) and of an idle sync, back to back and 2 ms apart, through ctypes on the
system's libcudart; mode 'plain' or 'torch' (torch imported and its CUDA initialised first)."""
import ctypes, sys, time, statistics, json

mode = sys.argv[1]
if mode == "torch":
    import torch
    torch.cuda.init()
    torch.zeros(1, device="cuda")
rt = ctypes.CDLL("/usr/local/cuda-13.0/lib64/libcudart.so.13")
drv = ctypes.CDLL("libcuda.so.1")
def ok(e, what):
    if e != 0:
        raise SystemExit(f"{what}: {e}")
ok(rt.cudaSetDevice(0), "setdevice")
ok(rt.cudaFree(None), "free0")
flags, active = ctypes.c_uint(), ctypes.c_int()
ok(drv.cuDevicePrimaryCtxGetState(0, ctypes.byref(flags), ctypes.byref(active)), "state")
rtflags = ctypes.c_uint()
ok(rt.cudaGetDeviceFlags(ctypes.byref(rtflags)), "getflags")
s = ctypes.c_void_p()
ok(rt.cudaStreamCreateWithFlags(ctypes.byref(s), 1), "stream")
h, d = ctypes.c_void_p(), ctypes.c_void_p()
ok(rt.cudaMallocHost(ctypes.byref(h), 4096), "mallochost")
ok(rt.cudaMalloc(ctypes.byref(d), 4096), "malloc")
memcpy = rt.cudaMemcpyAsync
memcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
sync = rt.cudaStreamSynchronize
sync.argtypes = [ctypes.c_void_p]
out = {"mode": mode, "ctx_flags": flags.value, "ctx_active": active.value, "rt_flags": rtflags.value}
for gap in (0, 0.002):
    for name, kind in (("h2d", 1), ("d2h", 2), ("idle", None)):
        ts = []
        for i in range(1000):
            if gap:
                t_end = time.perf_counter() + gap
                while time.perf_counter() < t_end:
                    pass
            t0 = time.perf_counter_ns()
            if kind == 1:
                memcpy(d, h, 4096, 1, s)
            elif kind == 2:
                memcpy(h, d, 4096, 2, s)
            sync(s)
            ts.append(time.perf_counter_ns() - t0)
        ts = ts[200:]
        out[f"{name}_{'apart' if gap else 'b2b'}_p50_us"] = statistics.median(ts) / 1e3
print(json.dumps(out))
