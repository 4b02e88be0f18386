"""Benchmark 4: the dedup job at scale on local[2] with a 1 GiB driver: wall time, peak RSS, CC rounds.

    python bench/dedup/bench_scale.py --docs 100000 [--work DIR] [--keep] [--data DIR]

Corpus (synthetic scale-up of real text, say so when quoting): every document of the shared corpora
(Gutenberg novels whole and as paragraphs, UDHR, Shakespeare turns, presidential speeches, Zyte articles,
C4, CommonCrawl 2019, both sides of the CopyCat pairs; ~40k documents, with their own exact and near
duplicates), then, until ``--docs``, copies of randomly chosen base documents under 20k words with unique
ids: 10% are injected near-duplicates (1-5% of words replaced by random corpus words), 90% are
"new" documents (50% of words replaced: word-5-gram Jaccard to the source ~0.03). Written as JSONL,
converted to a Delta table by a separate Spark process (not measured).

Measured: ``bench/dedup/run_dedup_conf.py --conf spark.driver.memory=1g -- --input SILVER --lake LAKE
--clusters LAKE/clusters`` (LAKELM_MASTER=local[2], defaults: 5-grams, 0.8, 14 x 8, verification) as a
child process; /proc sampled every 0.5 s for the peak RSS of the driver JVM, the driver Python process and
the PySpark worker processes (summed per group), and of all of them together; cc_iterations from the job's
JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import common  # noqa: E402

HERE = Path(__file__).resolve().parent


def base_documents(data: Path) -> list[str]:
    texts = []
    for path in sorted(data.glob("*/*.jsonl")):
        for r in common.read_jsonl(path):
            if "text" in r:
                texts.append(r["text"])
            else:  # CopyCat pairs
                texts += [r["text_a"], r["text_b"]]
    return texts


def build(data: Path, n_docs: int, out: Path, seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    base = base_documents(data)
    pool = [t.split(" ") for t in base if len(t.split()) < 20000]
    vocab = np.array([w for t in random.Random(seed).sample(pool, 2000) for w in t])
    n_near = n_new = 0
    with open(out, "w", encoding="utf-8") as fh:
        for i, t in enumerate(base):
            fh.write(json.dumps({"doc_id": f"b{i:07d}", "text": t}) + "\n")
        for i in range(len(base), n_docs):
            words = np.array(pool[rng.integers(len(pool))], dtype=object)
            near = rng.random() < 0.1
            rate = rng.uniform(0.01, 0.05) if near else 0.5
            mask = rng.random(len(words)) < rate
            words[mask] = vocab[rng.integers(len(vocab), size=int(mask.sum()))]
            n_near += near
            n_new += not near
            fh.write(json.dumps({"doc_id": f"g{i:07d}", "text": " ".join(words)}) + "\n")
    return {"base": len(base), "near_dup_copies": n_near, "new_copies": n_new, "total": n_docs}


class Sampler(threading.Thread):
    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root, self.stop, self.peak = root, threading.Event(), {}

    def tree(self):
        children: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                    children.setdefault(ppid, []).append(int(d))
                except (OSError, IndexError, ValueError):
                    pass
        out, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += children.get(pid, [])
        return out

    def run(self):
        while not self.stop.is_set():
            groups = {"jvm": 0, "driver_python": 0, "python_workers": 0}
            for pid in self.tree():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                    with open(f"/proc/{pid}/status") as f:
                        rss = next((int(x.split()[1]) for x in f if x.startswith("VmRSS:")), 0) * 1024
                except OSError:
                    continue
                g = (
                    "jvm"
                    if "java" in cmd.split(" ")[0]
                    else "driver_python"
                    if pid == self.root
                    else "python_workers"
                    if "python" in cmd
                    else None
                )
                if g:
                    groups[g] += rss
            groups["total"] = sum(groups.values())
            for k, v in groups.items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            time.sleep(0.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--driver-memory", default="1g")
    p.add_argument("--conf", action="append", default=[], help="extra KEY=VALUE Spark settings for the job")
    p.add_argument("--data", type=Path, default=common.DATA)
    p.add_argument("--work", help="scratch folder (default: a temp dir, removed unless --keep)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--timeout", type=int, default=900, help="kill the job after this many seconds")
    p.add_argument("--json")
    args = p.parse_args()
    print(common.machine())
    work = Path(args.work or tempfile.mkdtemp(prefix="dedup_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    info = build(args.data, args.docs, work / "docs.jsonl")
    mb = (work / "docs.jsonl").stat().st_size / 2**20
    print(f"corpus: {info} ({mb:.0f} MiB JSONL) built in {time.perf_counter() - t0:.0f}s")
    env = {**os.environ, "LAKELM_MASTER": "local[2]"}
    conv = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import common; s = common.get_session(); "
        f"s.read.schema('doc_id string, text string').json({str(work / 'docs.jsonl')!r}).repartition(8)"
        f".write.format('delta').mode('overwrite').save({str(work / 'silver')!r})"
    )
    subprocess.run([sys.executable, "-c", conv], env=env, check=True, capture_output=True)
    lake = work / "lake"
    extra = [x for kv in args.conf for x in ("--conf", kv)]
    cmd = [
        sys.executable,
        str(HERE / "run_dedup_conf.py"),
        "--conf",
        f"spark.driver.memory={args.driver_memory}",
        *extra,
        "--",
        "--input",
        str(work / "silver"),
        "--lake",
        str(lake),
        "--clusters",
        str(lake / "clusters"),
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    lines = []
    timer = threading.Timer(args.timeout, proc.kill)
    timer.start()
    for line in proc.stdout:
        lines.append(line)
        if not line.startswith(("WARNING", "Using Spark", "Setting default", "To adjust")) and " WARN " not in line:
            print("  | " + line.rstrip()[:300], flush=True)
    rc = proc.wait()
    timer.cancel()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    job = next((json.loads(x) for x in reversed(lines) if x.startswith("{")), {})
    peak = {k: round(v / 2**20) for k, v in sampler.peak.items()}
    res = {
        "rc": rc,
        "wall_s": round(wall, 1),
        "docs": args.docs,
        "conf": args.conf,
        "corpus": info,
        "jsonl_mib": round(mb),
        "peak_rss_mib": peak,
        "job": job,
    }
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
