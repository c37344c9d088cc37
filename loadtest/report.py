"""Turn a bench run (loadtest/results/<stem>.json) into <stem>.md (tables, ratios) and <stem>.png (plot).

$ python -m loadtest.report loadtest/results/2026-11-23.json   # re-render a recorded run
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# The anchors (measured elsewhere on this machine kind, 1 pinned core, nano compute shape).
ANCHORS = (
    ("compute ceiling (matmul FLOPs at 169 GFLOP/s/core), STS-B / 1qx100 WikiQA", "~7.5k / ~5.1k", None),
    ("plain ORT, 1 thread, length-sorted batches of 32, fp32 / int8 (STS-B)", "3.4k / 4.3k", "sorted"),
    ("the same, unsorted batches", "2.1k / 2.6k", "unsorted"),
    ("sentence-transformers CrossEncoder, torch / onnx-int8", "1.9k / 2.8k", "cross-encoder"),
    ("Infinity server (torch engine), 1qx100 docs over HTTP", "1.2k-1.3k", None),
    ("naive FastAPI server, one ORT int8 call per request, 1qx20 docs", "1.4k-1.6k", "naive"),
)


OTHER_FILE = {"onnx": "onnx-int8", "onnx-int8": "onnx"}


def ceiling_of(rows: list[dict], workload: str, backend: str, *, sort: bool = True, tokenize: bool = False) -> float:
    for row in rows:
        if (row["workload"], row["backend"], row["sorted"], row["tokenize"]) == (workload, backend, sort, tokenize):
            return float(row["pairs_per_s"])
    return 0.0


def ceiling_for(rows: list[dict], workload: str, backend: str) -> float:
    """The workload's own ceiling, else (a --quick run) the closest measured set: score32 or rank100."""
    return ceiling_of(rows, workload, backend) or ceiling_of(
        rows, "score32" if workload.startswith("score") else "rank100", backend
    )


def cell(result: dict, server: str, workload: str, concurrency: int) -> dict | None:
    for row in result["cells"]:
        if (row["server"], row["workload"], row["concurrency"]) == (server, workload, concurrency):
            return row
    return None


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def ratio_target(name: str, ours: dict | None, theirs: dict | None, bar: float) -> tuple[str, str, str, str] | None:
    """A target row for pairs/s of `ours` over `theirs` (None when either was not measured)."""
    if not ours or not theirs or not theirs["pairs_per_s"]:
        return None
    r = ours["pairs_per_s"] / theirs["pairs_per_s"]
    measured = f"{fmt(ours['pairs_per_s'])} vs {fmt(theirs['pairs_per_s'])} pairs/s"
    return name, measured, f"{r:.2f}x", verdict(r >= bar)


def targets(result: dict) -> list[tuple[str, str, str, str]]:
    """(target, measured, ratio or value, verdict) for each target of the issue."""
    backend = result["config"]["backend"]
    start = result["ceiling_start"]
    out = []
    ours = cell(result, "ours-1w", "rank100", 8)
    ceil = ceiling_of(start, "rank100", backend)
    if ours and ceil:
        r = ours["pairs_per_s"] / ceil
        out.append(
            (
                "1 worker, 1 core, /rank 1qx100, c=8 >= 0.8x ceiling",
                f"{fmt(ours['pairs_per_s'])} vs ceiling {fmt(ceil)} pairs/s",
                f"{r:.2f}x",
                verdict(r >= 0.8),
            )
        )
    naive_targets = (("rank20", 32, 2.0), ("score1", 32, 1.5), ("score1", 1, 1.0))
    for server, (workload, conc, bar) in ((s, t) for s in ("ours-1w", "ours-1w-granian") for t in naive_targets):
        on = "" if server == "ours-1w" else " (granian)"
        row = ratio_target(
            f"{workload} c={conc}{on} >= {bar:g}x naive",
            cell(result, server, workload, conc),
            cell(result, "naive", workload, conc),
            bar,
        )
        out += [row] if row else []
    for workload, conc in ((w, c) for w in ("rank20", "rank100") for c in (1, 8, 32)):
        row = ratio_target(
            f"{workload} c={conc} >= 2x Infinity (same model, same core)",
            cell(result, "ours-1w", workload, conc),
            cell(result, "infinity", workload, conc),
            2.0,
        )
        out += [row] if row else []
    for peer in result.get("peers", []):
        name = f"{peer['workload']} c=1 over HTTP ahead of {peer['peer']} in-process"
        row = ratio_target(name, cell(result, "ours-1w", peer["workload"], 1), peer, 1.0)
        out += [row] if row else []
    for workload, conc in (("rank100", 8), ("rank100", 32), ("rank20", 32), ("score1", 32), ("mix", 32)):
        row = ratio_target(
            f"2 workers / 1 worker, {workload} c={conc} >= 1.7x",
            cell(result, "ours-2w", workload, conc),
            cell(result, "ours-1w", workload, conc),
            1.7,
        )
        out += [row] if row else []
    lat = cell(result, "ours-1w", "rank20", 1)
    # Its compute floor: the request's own 20 pairs encoded, padded and run as one batch in process
    # (loadtest.ceiling --lone). Runs recorded before 2026-12-06 used 20 pairs at the throughput ceiling's rate
    # instead, whose batches are cut from every request's pairs sorted by length: padding a lone request
    # cannot avoid. Both are shown.
    lone = next((r for r in result.get("lone_floor", []) if r["workload"] == "rank20"), None)
    rate = ceiling_of(start, "rank20", backend, tokenize=True) or ceiling_for(start, "rank20", backend)
    floor_ms = lone["lone_p50_ms"] if lone else (20_000 / rate if rate else 0.0)
    if lat and floor_ms:
        throughput_floor = f"; 20 pairs at the ceiling's rate {20_000 / rate:.1f} ms" if lone and rate else ""
        out.append(
            (
                "rank20 c=1 p50 <= 1.2x its compute floor",
                f"p50 {lat['p50_ms']:.1f} / p95 {lat['p95_ms']:.1f} / p99 {lat['p99_ms']:.1f} ms; "
                f"compute floor {floor_ms:.1f} ms{' (the request alone, in process)' if lone else ''}"
                + throughput_floor,
                f"{lat['p50_ms'] / floor_ms:.2f}x",
                verdict(lat["p50_ms"] <= 1.2 * floor_ms),
            )
        )
    for name, fp in result["footprint"].items():
        if not name.startswith("ours"):
            continue
        workers = [p for p in fp["processes"] if p["role"] == "worker"]
        peak = max(p["peak_rss_mb"] for p in workers)
        out.append(
            (
                f"{name}: peak RSS per worker <= 200 MB",
                ", ".join(f"{p['peak_rss_mb']:.0f}" for p in workers) + " MB",
                f"{peak:.0f} MB",
                verdict(peak <= 200),
            )
        )
        out.append(
            (
                f"{name}: ready <= 3 s after start",
                f"{fp['ready_seconds']:.2f} s",
                f"{fp['ready_seconds']:.2f} s",
                verdict(fp["ready_seconds"] <= 3.0),
            )
        )
    return out


def server_breakdown(row: dict) -> str:
    """Mean batch, padding and where the server's time went, from its own /metrics deltas."""
    s = row.get("server_metrics") or {}
    batches = s.get("hashrank_batch_size_pairs_count", 0)
    if not batches:
        return "-"
    pairs = s["hashrank_batch_size_pairs_sum"]
    padded = s["hashrank_batch_padded_tokens_sum"]
    real = s.get("hashrank_batch_tokens_total", 0)
    busy = s["hashrank_inference_duration_seconds_sum"] / s["wall_seconds"]
    infer_rate = (
        pairs / s["hashrank_inference_duration_seconds_sum"] if s["hashrank_inference_duration_seconds_sum"] else 0
    )
    pad = 1 - real / padded if padded else 0
    return f"{pairs / batches:.1f} | {pad:.0%} | {busy:.0%} | {fmt(infer_rate)}"


def latency_table(result: dict, server: str) -> list[str]:
    backend = result["config"]["backend"]
    start = result["ceiling_start"]
    lines = [
        "| workload | c | req/s | pairs/s | p50 ms | p95 ms | p99 ms | vs ceiling | vs naive | errors "
        "| batch pairs | padding | ORT busy | ORT pairs/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["cells"]:
        if row["server"] != server:
            continue
        served = OTHER_FILE[backend] if server.endswith(OTHER_FILE[backend]) else backend
        ceil = ceiling_for(start, row["workload"], served)
        naive = cell(result, "naive", row["workload"], row["concurrency"])
        vs_naive = ratio(row["pairs_per_s"], naive["pairs_per_s"]) if naive and server != "naive" else "-"
        errors = sum(row["errors"].values()) if row["errors"] else 0
        lines.append(
            f"| {row['workload']} | {row['concurrency']} | {row['rps']:,.1f} | {fmt(row['pairs_per_s'])} "
            f"| {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['p99_ms']:.1f} | {ratio(row['pairs_per_s'], ceil)} "
            f"| {vs_naive} | {errors} | {server_breakdown(row)} |"
        )
    return lines


def ceiling_table(result: dict) -> list[str]:
    lines = [
        "| workload | model | file | batches | tokenize in loop | pairs/s (start) | pairs/s (end) | mean padded len |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["ceiling_start"]:
        end = ceiling_of(
            result["ceiling_end"], row["workload"], row["backend"], sort=row["sorted"], tokenize=row["tokenize"]
        )
        lines.append(
            f"| {row['workload']} | {row['model']} | {row['backend']} | {'sorted' if row['sorted'] else 'unsorted'} "
            f"| {'yes' if row['tokenize'] else 'no'} | {fmt(row['pairs_per_s'])} | {fmt(end) if end else '-'} "
            f"| {row['mean_padded_len']} |"
        )
    return lines


def anchor_table(result: dict) -> list[str]:
    start = result["ceiling_start"]

    def pair(workload: str, sort: bool) -> tuple[float, float]:
        return ceiling_of(start, workload, "onnx", sort=sort), ceiling_of(start, workload, "onnx-int8", sort=sort)

    lines = [
        "| setup, 1 pinned core | issue anchor pairs/s | this run pairs/s | ratio in this run |",
        "|---|---|---|---|",
    ]
    sorted_fp, sorted_i8 = pair("score32", True)
    unsorted_fp, unsorted_i8 = pair("score32", False)
    for label, anchor, key in ANCHORS:
        ours, rel = "not measured", "-"
        if key == "sorted" and sorted_fp:
            ours = f"{fmt(sorted_fp)} / {fmt(sorted_i8)}"
            rel = f"int8/fp32 {ratio(sorted_i8, sorted_fp)} (anchor 1.26x)"
        elif key == "unsorted" and unsorted_fp:
            ours = f"{fmt(unsorted_fp)} / {fmt(unsorted_i8)}"
            rel = f"sorted/unsorted {ratio(sorted_fp, unsorted_fp)} / {ratio(sorted_i8, unsorted_i8)} (anchor 1.6-1.9x)"
        elif key == "cross-encoder":
            rank100 = {p["peer"]: p["pairs_per_s"] for p in result.get("peers", []) if p["workload"] == "rank100"}
            torch_rate, int8_rate = rank100.get("cross-encoder-torch"), rank100.get("cross-encoder-onnx-int8")
            if torch_rate and int8_rate:
                ours = f"{fmt(torch_rate)} / {fmt(int8_rate)} (1qx100, in-process)"
                rel = f"onnx-int8/torch {ratio(int8_rate, torch_rate)}"
        elif key == "naive":
            naive = [c for c in result["cells"] if c["server"] == "naive" and c["workload"] == "rank20"]
            if naive:
                best = max(c["pairs_per_s"] for c in naive)
                ceil = ceiling_of(start, "rank20", result["config"]["backend"])
                ours = f"{fmt(best)} (best of c=1/8/32, {result['config']['backend']})"
                rel = f"naive/ceiling {ratio(best, ceil)} (anchor ~0.35x of int8 ceiling)"
        lines.append(f"| {label} | {anchor} | {ours} | {rel} |")
    for server, workload, conc in (("ours-1w", "rank100", 8), ("ours-1w", "rank20", 32), ("ours-2w", "rank100", 32)):
        row = cell(result, server, workload, conc)
        if row:
            ceil = ceiling_of(start, workload, result["config"]["backend"])
            lines.append(
                f"| **hashrank {server}, {workload} c={conc}** | - | {fmt(row['pairs_per_s'])} "
                f"| vs ceiling {ratio(row['pairs_per_s'], ceil)} |"
            )
    return lines


def footprint_table(result: dict) -> list[str]:
    lines = ["| server | ready s | processes: RSS now / peak MB (CPU s used) |", "|---|---|---|"]
    for name, fp in result["footprint"].items():
        procs = ", ".join(
            f"{p['role']} {p['rss_mb']:.0f} / {p['peak_rss_mb']:.0f} ({p.get('cpu_s', 0):.0f})" for p in fp["processes"]
        )
        lines.append(f"| {name} | {fp['ready_seconds']:.2f} | {procs} |")
    return lines


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(row["workload"] for row in result["cells"]))
    servers = list(dict.fromkeys(row["server"] for row in result["cells"]))
    backend = result["config"]["backend"]
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads), 4.2), squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        for i, server in enumerate(servers):
            rows = sorted(
                (r for r in result["cells"] if r["server"] == server and r["workload"] == workload),
                key=lambda r: r["concurrency"],
            )
            if not rows:
                continue
            x = [r["pairs_per_s"] for r in rows]
            color = f"C{i}"
            ax.plot(x, [r["p50_ms"] for r in rows], "o-", color=color, label=f"{server} p50")
            ax.plot(x, [r["p99_ms"] for r in rows], "x:", color=color, label=f"{server} p99")
            for r in rows:
                ax.annotate(
                    f"c{r['concurrency']}",
                    (r["pairs_per_s"], r["p50_ms"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, 3),
                )
        ceil = ceiling_for(result["ceiling_start"], workload, backend)
        if ceil:
            ax.axvline(ceil, color="k", linestyle="--", linewidth=1, label="ORT ceiling (1 core)")
        ax.set_yscale("log")
        ax.set_title(workload)
        ax.set_xlabel("pairs/s")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("latency ms (log)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(f"hashrank latency vs throughput ({result['date']}, {result['env']['cpu']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(result: dict, stem: str) -> str:
    env, cfg = result["env"], result["config"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    out = [
        f"# hashrank benchmark {result['date']}",
        "",
        f"`python -m loadtest.bench` (raw numbers: `{stem}.json`; plot: `{stem}.png`); "
        f"ran {result['wall_seconds']:.0f} s.",
        "",
        f"- **Machine:** {env['cpu']}, {env['cores']} cores, SIMD: {', '.join(env['simd']) or 'none of avx2/avx512'}; "
        f"load average at start {env['loadavg_start'][0]:.1f}, at end {env['loadavg_end'][0]:.1f} "
        "(anything near or above the core count means other jobs shared the CPU and absolute numbers are noisy; "
        "compare the ratios, all measured in this run).",
        f"- **Software:** {versions}; commit {env['commit']}.",
        f"- **Models:** score `{result['models']['score']}`, rank `{result['models']['rank']}`, served file: "
        f"{cfg['backend']}.",
        f"- **Method:** server pinned to cpu {cfg['server_cpus']} (1 worker, HASHRANK_THREADS=1), closed-loop "
        f"client (`loadtest.loadgen`, raw HTTP/1.1 keep-alive) pinned to cpu {cfg['client_cpus']}; each cell "
        f"{cfg['warmup']} s warm-up + {cfg['seconds']} s measured. 2 workers run on cpus {cfg['all_cpus']} and "
        "share them with the client. The ceiling is `loadtest.ceiling`: a 1-thread ORT session on the same file "
        "and the same pairs, length-sorted batches of 32 run in a fixed shuffled order (so the timed window sees the "
        "whole length mix), tokenization outside the timed loop unless marked.",
        "",
        "## Targets (issues 8 and 26)",
        "",
        "| target | measured | value | verdict |",
        "|---|---|---|---|",
        *(f"| {t} | {m} | {v} | {ok} |" for t, m, v, ok in targets(result)),
        "",
        "## Anchors from the issue next to this run",
        "",
        *anchor_table(result),
        "",
        "## In-process ceiling",
        "",
        *ceiling_table(result),
        "",
    ]
    for server in dict.fromkeys(row["server"] for row in result["cells"]):
        out += [f"## {server}", "", *latency_table(result, server), ""]
    out += [
        "Columns after *errors* come from the server's own `/metrics` over the cell: mean pairs per forward "
        "pass, share of padded tokens, share of wall time inside ONNX Runtime (ORT busy), and pairs per second "
        "of ORT time (compare with the ceiling: below it means batches are small or badly padded; ORT busy "
        "well below 100% at high concurrency means time goes to HTTP, JSON, tokenization or the event loop).",
        "",
        "## Footprint",
        "",
        *footprint_table(result),
        "",
        f"![latency vs throughput]({stem}.png)",
        "",
    ]
    return "\n".join(out)


def write_report(result: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path | None]:
    """Write <stem>.md, and <stem>.png when matplotlib is installed (the tables never depend on it)."""
    md, png = out_dir / f"{stem}.md", out_dir / f"{stem}.png"
    md.write_text(render(result, stem))
    try:
        plot(result, png)
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return md, None
    return md, png


def main(argv: list[str] | None = None) -> int:
    raw = Path((argv or sys.argv[1:])[0])
    md, png = write_report(json.loads(raw.read_text()), raw.parent, raw.stem)
    print(md, png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
