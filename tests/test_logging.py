"""Job logging drops exactly py4j's benign retry traceback and nothing else."""
import logging

from recsys_spark.runtime import configure_logging


def record(level: int, pathname: str, name: str = "root") -> logging.LogRecord:
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        import sys
        exc_info = sys.exc_info()
    return logging.LogRecord(name, level, pathname, 1056, "Exception while sending command.", None, exc_info)


def test_py4j_retry_traceback_is_dropped_but_a_real_failure_shows():
    configure_logging("INFO")
    root = logging.getLogger()
    gateway = "/venv/lib/python3.11/site-packages/py4j/java_gateway.py"
    assert not root.filter(record(logging.INFO, gateway))  # retried, succeeded: noise
    # twins: py4j's failure after the retry (logging.exception), and anyone else's INFO on root
    assert root.filter(record(logging.ERROR, gateway))
    assert root.filter(record(logging.INFO, "/work/recsys_spark/evaluation.py"))
