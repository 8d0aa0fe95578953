#!/usr/bin/env python3
"""Scaling model for ddp-train, calibrated on the emulated cluster (cluster/SCALING.md).

    Scripts/scaling-model.py [scaling-measurements.jsonl] [--fit-rate 2.5gbit]

Reads the JSON lines written by Scripts/scaling-measure.sh and prints Markdown:

1. Calibration: per link rate R, a least-squares fit over all sizes n and host counts H of the ring
   all-reduce cost
       t(n, H) = 2(H-1)*a + 2(H-1)/H * n / (e*R)
   to the measured medians (kind=comm, ms_median). a: latency per ring step, e: achieved fraction of
   the link rate. For the unlimited (veth) links there is no R: the fit gives an effective bandwidth
   B = e*R instead. The fit minimises the *relative* residuals (each point weighted by 1/t_measured),
   so the 0.25 MiB and 8 MiB sizes count alike; a is constrained to >= 0.
2. Check: the step time at each emulated (H, R) predicted as
       T = T_compute(H) + t(G, H)
   with T_compute(H) the compute-only reference (H ranks on the real machine, shared memory, kind=
   compute) and G the gradient bytes; no overlap of communication with backward (on a 2-vCPU VM the
   kernel's TCP copies need the same cores as backward). Against the measured kind=step ms_per_step.
   A second column counts the latency once per 1 MiB bucket (the trainer sends 3 buckets).
3. Prediction: weak-scaling efficiency T_compute / (T_compute + t(G, H)) at 8, 16, 64 machines on
   10, 25, 100 Gbit/s links, with T_compute the one-rank, one-core step (kind=compute1) and a, e from
   the fit at --fit-rate; fp32 wire (n = G) and bf16 wire (n = G/2).
Standard library only.
"""

import argparse
import json
import math
import re
import sys

GRAD_BYTES = 669_706 * 4  # 2,678,824: MLP 784-512-512-10, fp32
BUCKET_BYTES = 1 << 20  # hierarchical reducer's bucket between machines
PRED_MACHINES = (8, 16, 64)
PRED_GBIT = (10, 25, 100)


def rate_bits_per_s(rate):
    """'2.5gbit' -> 2.5e9; 'unlimited' -> None (tc units: kbit/mbit/gbit are powers of 1000)."""
    m = re.fullmatch(r"([0-9.]+)\s*(k|m|g)?bit", rate.strip().lower())
    if not m:
        return None
    return float(m.group(1)) * {None: 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]


def fit(points):
    """points: (H, n_bytes, t_ms). Fits t = a*x1 + b*x2 with x1 = 2(H-1), x2 = 2(H-1)/H * n,
    weights 1/t (relative residuals), a >= 0, b > 0. Returns (a_ms, b_ms_per_byte, rms_rel_err)."""
    rows = []
    for h, n, t in points:
        w = 1.0 / t
        rows.append((2 * (h - 1) * w, 2 * (h - 1) / h * n * w, 1.0))  # x1*w, x2*w, t*w
    s11 = sum(r[0] * r[0] for r in rows)
    s12 = sum(r[0] * r[1] for r in rows)
    s22 = sum(r[1] * r[1] for r in rows)
    s1y = sum(r[0] * r[2] for r in rows)
    s2y = sum(r[1] * r[2] for r in rows)
    det = s11 * s22 - s12 * s12
    a = (s1y * s22 - s2y * s12) / det
    b = (s11 * s2y - s12 * s1y) / det
    if a < 0:  # constrained: latency 0, bandwidth only
        a, b = 0.0, s2y / s22
    rel = [(a * 2 * (h - 1) + b * 2 * (h - 1) / h * n - t) / t for h, n, t in points]
    return a, b, math.sqrt(sum(r * r for r in rel) / len(rel))


def allreduce_ms(a, b, h, n, buckets=1):
    return buckets * 2 * (h - 1) * a + b * 2 * (h - 1) / h * n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", nargs="?", default="scaling-measurements.jsonl")
    ap.add_argument("--fit-rate", default="2.5gbit",
                    help="which calibrated link rate's a and e the prediction uses (default 2.5gbit)")
    args = ap.parse_args()

    recs = [json.loads(l) for l in open(args.file) if l.strip().startswith("{")]
    comm = [r for r in recs if r["kind"] == "comm"]
    step = {(r["H"], r["rate"]): r for r in recs if r["kind"] == "step"}
    compute = {r["H"]: r for r in recs if r["kind"] == "compute"}
    compute1 = [r for r in recs if r["kind"] == "compute1"]
    rates = []
    for r in comm:
        if r["rate"] not in rates:
            rates.append(r["rate"])
    if not comm or not step or not compute or not compute1:
        sys.exit("scaling-model: the file lacks comm, step, compute or compute1 records")

    out = print
    out("# Scaling model (from %s)\n" % args.file)
    out("Gradient G = %d bytes (669,706 fp32 parameters); buckets between machines: %d x <= 1 MiB.\n"
        % (GRAD_BYTES, math.ceil(GRAD_BYTES / BUCKET_BYTES)))

    # 1. calibration
    fits = {}
    out("## Calibration: t(n, H) = 2(H-1)*a + 2(H-1)/H * n / (e*R), fit to all-reduce medians\n")
    out("| link rate R | H fitted | sizes (MiB) | a (ms per ring step) | e (fraction of R) "
        "| effective bandwidth e*R (Gbit/s) | RMS relative residual |")
    out("|---|---|---|---|---|---|---|")
    for rate in rates:
        pts = [(r["H"], r["bytes"], r["ms_median"]) for r in comm if r["rate"] == rate]
        a, b, rms = fit(pts)
        fits[rate] = (a, b)
        bw = 8 / (b * 1e-3) / 1e9  # bits/s
        R = rate_bits_per_s(rate)
        e = "%.3f" % (bw * 1e9 / R) if R else "n/a (no limit)"
        hs = sorted({p[0] for p in pts})
        sizes = sorted({r["mib"] for r in comm if r["rate"] == rate})
        out("| %s | %s | %s | %.4f | %s | %.3f | %.1f%% |" % (
            rate, ",".join(map(str, hs)), ",".join("%g" % s for s in sizes), a, e, bw, 100 * rms))
    out("")
    out("Per-point residuals (measured median vs fit):\n")
    out("| R | H | MiB | measured ms | fit ms | error |")
    out("|---|---|---|---|---|---|")
    for rate in rates:
        a, b = fits[rate]
        for r in sorted((r for r in comm if r["rate"] == rate), key=lambda r: (r["H"], r["bytes"])):
            p = allreduce_ms(a, b, r["H"], r["bytes"])
            out("| %s | %d | %g | %.2f | %.2f | %+.0f%% |" % (
                rate, r["H"], r["mib"], r["ms_median"], p, 100 * (p - r["ms_median"]) / r["ms_median"]))
    out("")

    # 2. check against the measured training step
    nb = math.ceil(GRAD_BYTES / BUCKET_BYTES)
    out("## Check: predicted vs measured step on the emulated hosts (no overlap)\n")
    out("T = T_compute(H) + t(G, H); T_compute(H) = `mpirun -np H` on the real machine (shared memory). "
        "Column 'per bucket' counts the latency once per bucket (%d all-reduces per step).\n" % nb)
    out("Last two columns: the fit replaced by the all-reduce of the gradient's size measured at that "
        "(H, R) (`--comm-sizes 2.5546`): T_compute(H) + measured t, which tests the no-overlap sum alone.\n")
    out("| H | link rate | T_compute(H) ms | t(G,H) ms | predicted ms | measured ms | error "
        "| predicted, per bucket ms | error | T_compute + measured t ms | error |")
    out("|---|---|---|---|---|---|---|---|---|---|---|")
    gcomm = {(r["H"], r["rate"]): r["ms_median"] for r in comm if abs(r["bytes"] - GRAD_BYTES) < 1024}
    errs_m = []
    errs, errs_b = [], []
    for (h, rate) in sorted(step, key=lambda k: (k[0], rates.index(k[1]) if k[1] in rates else 0)):
        if rate not in fits or h not in compute:
            continue
        a, b = fits[rate]
        tc = compute[h]["ms_per_step"]
        t1 = allreduce_ms(a, b, h, GRAD_BYTES)
        tb = allreduce_ms(a, b, h, GRAD_BYTES, nb)
        meas = step[(h, rate)]["ms_per_step"]
        e1, eb = (tc + t1 - meas) / meas, (tc + tb - meas) / meas
        errs.append(abs(e1))
        errs_b.append(abs(eb))
        tm = gcomm.get((h, rate))
        if tm is None:
            mcols = "| n/a | n/a |"
        else:
            em = (tc + tm - meas) / meas
            errs_m.append(abs(em))
            mcols = "| %.2f | %+.0f%% |" % (tc + tm, 100 * em)
        out("| %d | %s | %.2f | %.2f | %.2f | %.2f | %+.0f%% | %.2f | %+.0f%% %s" % (
            h, rate, tc, t1, tc + t1, meas, 100 * e1, tc + tb, 100 * eb, mcols))
    if errs:
        out("\nMean |error|: %.0f%% (one all-reduce), %.0f%% (per bucket); max %.0f%% / %.0f%%." % (
            100 * sum(errs) / len(errs), 100 * sum(errs_b) / len(errs_b), 100 * max(errs), 100 * max(errs_b)))
        if errs_m:
            out("With the measured t instead of the fit: mean |error| %.0f%%, max %.0f%%." % (
                100 * sum(errs_m) / len(errs_m), 100 * max(errs_m)))
        out("")

    # 3. prediction
    if args.fit_rate not in fits or rate_bits_per_s(args.fit_rate) is None:
        sys.exit("scaling-model: --fit-rate %s is not a calibrated limited rate" % args.fit_rate)
    a, b = fits[args.fit_rate]
    e = (8 / (b * 1e-3)) / rate_bits_per_s(args.fit_rate)
    tc1 = compute1[0]["ms_per_step"]
    out("## Prediction (not a measurement): weak-scaling efficiency T_compute / (T_compute + t(G, H))\n")
    out("T_compute = %.3f ms (one rank, batch 64, one core, measured); a = %.4f ms, e = %.3f (fit at %s).\n"
        % (tc1, a, e, args.fit_rate))
    out("| machines | link | t fp32 ms | efficiency fp32 | t bf16 ms | efficiency bf16 |")
    out("|---|---|---|---|---|---|")
    for h in PRED_MACHINES:
        for g in PRED_GBIT:
            R = g * 1e9
            tf = 2 * (h - 1) * a + 2 * (h - 1) / h * GRAD_BYTES * 8 / (e * R) * 1e3
            th = 2 * (h - 1) * a + 2 * (h - 1) / h * GRAD_BYTES / 2 * 8 / (e * R) * 1e3
            out("| %d | %d Gbit/s | %.2f | %.0f%% | %.2f | %.0f%% |" % (
                h, g, tf, 100 * tc1 / (tc1 + tf), th, 100 * tc1 / (tc1 + th)))
    out("")
    for h in PRED_MACHINES:
        out("- latency share at %d machines: 2(H-1)*a = %.2f ms per all-reduce (x%d if counted per bucket)"
            % (h, 2 * (h - 1) * a, nb))
    out("\nAssumptions:\n")
    out("- Ring all-reduce: 2(H-1) steps, each machine sends and receives 2(H-1)/H * n bytes.")
    out("- One rank per machine, per-rank batch 64 (weak scaling: the global batch grows with H).")
    out("- T_compute is the measured one-rank step on one core of this VM (%.3f ms); a real machine's "
        "compute per step may differ." % tc1)
    out("- Latency a = %.4f ms per ring step and efficiency e = %.3f are the emulated %s fit "
        "(veth + tbf on a shared 2-vCPU machine), carried over to 10/25/100 Gbit/s unchanged."
        % (a, e, args.fit_rate))
    out("- No overlap of communication with backward: T = T_compute + t.")
    out("- fp32 wire: n = G = %d bytes; bf16 wire: n = G/2 = %d bytes (latency unchanged)."
        % (GRAD_BYTES, GRAD_BYTES // 2))
    out("- One all-reduce of G per step (the trainer sends %d buckets of <= 1 MiB; see the latency lines)." % nb)


if __name__ == "__main__":
    main()
