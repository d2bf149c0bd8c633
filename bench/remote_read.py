"""What reading a HATS catalogue remotely costs: `lensmae predict` over the same
catalogue on disk, from a range-capable web server and from moto's S3 server, both
on this machine (loopback: the request path's overhead, not a network's).

    python bench/remote_read.py [WORKDIR] [THREADS]

WORKDIR holds the catalogue `bench/lsdb_scale.py` builds (default
target/lsdb-scale/cutouts, 100,000 64x64 cutouts in 11 partitions). Prints one JSON
line per run: seconds, rows/s, peak RSS, and the bytes and requests the server
answered against the catalogue's size. Needs the release CLI, moto[server] and
boto3 (target/venv-test has them after tests/run-all.sh).
"""
import http.server
import json
import os
import pathlib
import sys
import threading

from cli_timing import timed_predict

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORK = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "target" / "lsdb-scale")
THREADS = sys.argv[2] if len(sys.argv) > 2 else "2"
CATALOGUE = WORK / "cutouts"


class Counted:
    bytes = 0
    requests = 0
    whole_file_gets = 0
    lock = threading.Lock()


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """HEAD, GET and single `Range: bytes=a-b` requests over the catalogue's folder."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=str(WORK), **kwargs)

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = pathlib.Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        asked = self.headers.get("Range")
        if asked and asked.startswith("bytes="):
            a, b = asked[6:].split("-")
            start, end, status = int(a), min(int(b) if b else size - 1, size - 1), 206
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{size}-{int(path.stat().st_mtime)}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        self.wfile.write(body)
        with Counted.lock:
            Counted.bytes += len(body)
            Counted.requests += 1
            Counted.whole_file_gets += status == 200 and path.suffix == ".parquet"


def main():
    import pyarrow.parquet as pq

    files = sorted(CATALOGUE.rglob("*"))
    catalogue_bytes = sum(f.stat().st_size for f in files if f.is_file())
    rows = pq.read_metadata(CATALOGUE / "dataset" / "_metadata").num_rows
    env = dict(os.environ, RAYON_NUM_THREADS=THREADS)

    def report(run, seconds, peak_mb, **extra):
        print(json.dumps({"run": run, "rows": rows, "seconds": round(seconds, 2),
                          "rows_per_s": round(rows / seconds, 1), "peak_rss_mb": round(peak_mb, 1),
                          "threads": int(THREADS), **extra}), flush=True)

    seconds, peak = timed_predict(CATALOGUE, WORK / "remote-local", env)
    report("disk", seconds, peak, catalogue_bytes=catalogue_bytes)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cutouts"
    seconds, peak = timed_predict(url, WORK / "remote-http", env)
    report("https (loopback web server)", seconds, peak, bytes_served=Counted.bytes, requests=Counted.requests,
           whole_file_gets=Counted.whole_file_gets, catalogue_bytes=catalogue_bytes)
    server.shutdown()

    import boto3
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3_env = dict(env, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
                  AWS_ENDPOINT_URL=endpoint)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    client.create_bucket(Bucket="survey")
    for f in files:
        if f.is_file():
            client.upload_file(str(f), "survey", f"cutouts/{f.relative_to(CATALOGUE).as_posix()}")
    seconds, peak = timed_predict("s3://survey/cutouts", WORK / "remote-s3", s3_env)
    report("s3 (loopback moto server)", seconds, peak, catalogue_bytes=catalogue_bytes)
    moto.stop()


if __name__ == "__main__":
    main()
