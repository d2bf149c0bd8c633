"""`lensmae predict` over a catalogue, timed, with its peak memory (the benches' shared run)."""
import pathlib
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def timed_predict(source, out, env):
    """Seconds and peak RSS (MB, from /usr/bin/time) of one `lensmae predict --shape 64,64` run."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", str(ROOT / "target/release/lensmae"), "predict",
                           "--input", str(source), "--shape", "64,64", "--out", str(out), "--overwrite"],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return seconds, int(done.stderr.strip().splitlines()[-1]) / 1024
