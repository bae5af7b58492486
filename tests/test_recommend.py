"""``recsys recommend`` reads the night's publish record and its Parquet files with pyarrow: the same
output as the Spark lookup it replaced, without importing pyspark (no JVM, no metastore), for a
record naming a plain path or a ``file:`` URI, the latest night by default."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys_spark.published import write_record

ROOT = Path(__file__).resolve().parent.parent
TABLE = "recsys.recommendations"
REC = pa.struct([("rank", pa.int32()), ("item_id", pa.string()), ("score", pa.float32())])
SCHEMA = pa.schema([("user_id", pa.string()), ("recs", pa.list_(REC)), ("source", pa.string()),
                    ("model_version", pa.string()), ("generated_at", pa.timestamp("us"))])

# Runs the job in a fresh interpreter and reports what it imported: the assertion is about that process.
HARNESS = """
import json, sys, time
started = time.monotonic()
{imports}
from jobs.recommend import main
code = main(sys.argv[1:])
print(json.dumps({{"code": code, "pyspark": any(m.split(".")[0] == "pyspark" for m in sys.modules),
                  "seconds": time.monotonic() - started}}))
"""


def publish_night(root: Path, ds: str, first_item: str, uri: bool) -> None:
    """A night laid out as the score stage leaves it: a run directory with Spark-style part files
    (plus the _SUCCESS marker readers must skip), then the record naming it."""
    run = root / "warehouse" / "recommendations" / "_versions" / f"ds={ds}" / "run=abc"
    run.mkdir(parents=True)
    rows = [{"user_id": u, "recs": [{"rank": 1, "item_id": first_item, "score": 0.75},
                                    {"rank": 2, "item_id": "i2", "score": 0.5}],
             "source": "model", "model_version": f"{ds}-m", "generated_at": dt.datetime(2026, 11, 26)}
            for u in ("u0", "u1")]
    pq.write_table(pa.Table.from_pylist(rows[:1], SCHEMA), run / "part-00000.snappy.parquet")
    pq.write_table(pa.Table.from_pylist(rows[1:], SCHEMA), run / "part-00001.snappy.parquet")
    (run / "_SUCCESS").write_text("")
    write_record(root, TABLE, ds, f"file:{run}" if uri else str(run), 2, f"{ds}-m")


def recommend(root: Path, *args: str, imports: str = "") -> tuple[dict, str]:
    result = subprocess.run([sys.executable, "-c", HARNESS.format(imports=imports), "--user", *args,
                             "--set", f"storage.root={root}"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    *printed, report = result.stdout.splitlines()
    return json.loads(report), "\n".join(printed)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("published")
    publish_night(root, "2026-11-25", "i9", uri=False)
    publish_night(root, "2026-11-26", "i7", uri=True)
    return root


def test_recommend_reads_the_published_files_without_spark(root):
    started = time.monotonic()
    report, printed = recommend(root, "u1", "--ds", "2026-11-25")
    assert printed == ("user u1, night 2026-11-25, source model, model 2026-11-25-m\n"
                       "   1  i9                   0.7500\n"
                       "   2  i2                   0.5000")
    assert report["code"] == 0 and not report["pyspark"]
    assert time.monotonic() - started < 30  # a fresh interpreter, no JVM: ~1 s quiet (a Spark lookup: minutes)


def test_recommend_defaults_to_the_latest_night_and_reads_file_uris(root):
    report, printed = recommend(root, "u0")
    assert printed.splitlines()[:2] == ["user u0, night 2026-11-26, source model, model 2026-11-26-m",
                                        "   1  i7                   0.7500"]
    assert not report["pyspark"]


def test_unknown_user_is_one_line_and_exit_1(root):
    report, printed = recommend(root, "nobody", "--ds", "2026-11-26")
    assert report["code"] == 1 and printed == "no recommendations for user 'nobody' on 2026-11-26"


def test_the_import_check_sees_pyspark_when_it_is_imported(root):
    """The twin: the same harness reports pyspark once anything on the path imports it."""
    report, _ = recommend(root, "u0", imports="import recsys_spark.publish")
    assert report["pyspark"]


def test_a_rewritten_record_replaces_the_old_one_atomically(tmp_path):
    write_record(tmp_path, TABLE, "2026-11-26", "/a", 1, "m1")
    path = write_record(tmp_path, TABLE, "2026-11-26", "/b", 2, "m2")
    assert json.loads(path.read_text())["location"] == "/b"
    assert sorted(p.name for p in path.parent.iterdir()) == ["ds=2026-11-26.json"]  # no temp file left
