"""A user's mistake (a missing file, an unknown night or model version, a bad config key) ends every
job with one ``recsys <command>: error: ...`` line naming the bad input and a non-zero exit status,
never a Python traceback or a Java stack trace. Real ``recsys`` subprocesses on a fresh warehouse;
most cases fail before the JVM starts, so the whole file costs two JVM starts."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _stack import SETTINGS, set_args

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
RECSYS = Path(sys.executable).parent / "recsys"
NIGHT = "2031-01-01"  # nothing exists for it
SMALL = ["--set", "spark.master=local[1]", "--set", "spark.conf={spark.ui.enabled: 'false'}"]
STACK = set_args(SETTINGS)  # the current stack: train.feed=arrow, train.backend=ddp (tests/_stack.py)
JAVA_FRAME = re.compile(r"^\s+at [\w$.]+\(.*\)$", re.M)

# (command line, exit status, what the one error line must name)
CASES = {
    "import-events missing path": (["import-events", "--format", "movielens", "--path", "/missing.tsv"],
                                   2, "/missing.tsv"),
    "import-events missing file: URI": (["import-events", "--format", "sequences", "--path",
                                         "file:///missing/seqs.txt"], 2, "file:///missing/seqs.txt"),
    "import-events csv without its columns": (["import-events", "--format", "csv", "--path", str(ROOT / "setup.py")],
                                              2, "--columns"),
    "import-events columns missing the time": (["import-events", "--format", "parquet", "--path", str(ROOT),
                                                "--columns", "user=u,item=i"], 2, "time column"),
    "tune night without a dataset": (["tune", "--ds", NIGHT, *STACK], 3, NIGHT),
    "build-sequences night without events": (["build-sequences", "--ds", NIGHT, *SMALL], 3, NIGHT),
    "build-sequences misspelt config key": (["build-sequences", "--ds", NIGHT, "--set", "sequences.windw_length=20"],
                                            1, "sequences.windw_length"),
    "train night without a dataset": (["train", "--ds", NIGHT, *STACK], 3, NIGHT),
    "train with no length buckets": (["train", "--ds", NIGHT, "--set", "train.length_buckets=0", *STACK], 1,
                                     "train.length_buckets must be at least 1"),
    "evaluate unknown model version": (["evaluate", "--ds", NIGHT, "--model-version", "v-typo"], 2, "v-typo"),
    "gate unknown model version": (["gate", "--ds", NIGHT, "--model-version", "v-typo"], 2, "v-typo"),
    "score unknown model version": (["score", "--ds", NIGHT, "--model-version", "v-typo"], 3, "v-typo"),
    "score without any model": (["score", "--ds", NIGHT], 3, "no production model"),
    "rollback to an unknown version": (["rollback", "--to", "v-typo"], 2, "v-typo"),
    "rollback with no history": (["rollback"], 2, "no earlier production model"),
    "recommend night not published": (["recommend", "--user", "u0", "--ds", NIGHT], 1, NIGHT),
    "recommend nothing published yet": (["recommend", "--user", "u0"], 1, "no night"),
    "similar-items unknown model version": (["similar-items", "--ds", NIGHT, "--model-version", "v-typo"],
                                            3, "v-typo"),
    "similar-items unknown rule": (["similar-items", "--ds", NIGHT, "--set", "similar.rule=nearest"], 1,
                                   "similar.rule"),
    "similar night not published": (["similar", "--item", "i1", "--ds", NIGHT], 1, NIGHT),
    "similar nothing published yet": (["similar", "--item", "i1"], 1, "no night"),
    "generate-events zero nights": (["generate-events", "--ds", NIGHT, "--days", "0"], 2, "--days 0"),
    "nightly table source without the night": (["nightly", "--ds", NIGHT, "--set", "nightly.source=table", *SMALL,
                                                           *STACK],
                                               3, NIGHT),
}


def run_recsys(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(RECSYS), *argv], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, needle: str) -> None:
    """The contract: exit ``code`` (not 0), exactly one ``error:`` line on stderr and it names
    ``needle``, no traceback and no Java stack frames anywhere in the output."""
    output = result.stdout + result.stderr
    assert result.returncode == code != 0, f"exit {result.returncode}, expected {code}:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    assert not JAVA_FRAME.search(output), output[-3000:]
    errors = [line for line in result.stderr.splitlines() if re.match(r"recsys [\w-]+: error: ", line)]
    assert len(errors) == 1 and needle in errors[0], f"error lines {errors} should name {needle!r}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("user_errors")  # conf/local.yaml: a fresh ./var under it


@pytest.mark.parametrize("case", CASES)
def test_a_mistake_is_one_line_and_an_exit_status(case, workdir):
    argv, code, needle = CASES[case]
    assert_one_line_error(run_recsys(argv, workdir), code, needle)


def test_a_bug_keeps_its_traceback_and_the_check_catches_it(tmp_path):
    """The twin: an exception that is not a user error (a bug) is not swallowed by the job plumbing,
    and the check above fails on its traceback, on Java frames and on a message that names nothing."""
    bug = subprocess.run([sys.executable, "-c", (
        "import sys\nfrom recsys_spark.runtime import job_main\n"
        "@job_main\ndef main(argv=None):\n    raise RuntimeError('a bug')\nsys.exit(main())")],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert bug.returncode == 1 and "RuntimeError: a bug" in bug.stderr
    with pytest.raises(AssertionError, match="Traceback"):
        assert_one_line_error(bug, 1, "a bug")
    java = subprocess.CompletedProcess([], 2, "", "recsys x: error: /missing.tsv\n"
                                       "java.io.FileNotFoundException: /missing.tsv\n"
                                       "\tat org.apache.hadoop.fs.RawLocalFileSystem.getFileStatus(RawLocalFileSystem.java:915)\n")
    with pytest.raises(AssertionError):
        assert_one_line_error(java, 2, "/missing.tsv")
    vague = subprocess.CompletedProcess([], 2, "", "recsys x: error: something went wrong\n")
    with pytest.raises(AssertionError, match="should name"):
        assert_one_line_error(vague, 2, "/missing.tsv")


@pytest.mark.parametrize("wrapped", [True, False])
def test_a_closed_pipe_ends_the_job_quietly(wrapped, tmp_path):
    """``recsys recommend ... | head``: the reader leaving is no traceback, and the exit status is a
    shell's SIGPIPE one; the twin without the job plumbing shows the check sees the traceback."""
    script = ("import sys\nfrom recsys_spark.runtime import job_main\n"
              + ("@job_main\n" if wrapped else "")
              + "def main(argv=None):\n    for i in range(200000):\n        print('u1', i)\n    return 0\n"
              "sys.exit(main())")
    result = subprocess.run(["bash", "-c", 'set -o pipefail; "$0" -c "$1" | head -1', sys.executable, script],
                            capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout == "u1 0\n"
    if wrapped:
        assert result.returncode == 141 and result.stderr == "", result.stderr
    else:
        assert "BrokenPipeError" in result.stderr
