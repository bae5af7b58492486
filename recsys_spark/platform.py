"""The single-host platform behind ``conf/standalone.yaml``: ``scripts/platform.sh up|down|status``.

Parts, started in this order from installed packages only (Debian ``postgresql`` and
``libpostgresql-jdbc-java``, the pip ``pyspark``):

1. PostgreSQL on the metastore URL's host and port, data under ``<platform.root>/postgres``, with a
   ``metastore`` role (password generated into an owner-only file) owning a ``metastore`` database.
2. A Spark standalone master on ``spark.master`` and ``platform.workers`` workers of
   ``platform.worker_cores`` cores each (separate JVMs), whose executors run this virtualenv's Python.
3. The Spark Thrift Server (HiveServer2 protocol) on the same metastore and warehouse with its own
   local master, so JDBC/ODBC clients such as beeline read the tables while jobs run. Its first start
   creates the Hive metastore schema in PostgreSQL (Spark's built-in Hive client).

Every part binds to the configured host (127.0.0.1 by default). ``up`` is idempotent (a part whose
pid file names a live process that answers is left alone) and waits until each part answers; a
port held by anything else fails with the part's name. ``down`` stops only the processes whose pid
files ``up`` wrote, in reverse order.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse

import pyspark

from recsys_spark.config import Config, ConfigError, load_config
from recsys_spark.metastore import HIVE_PASSWORD_KEY, PostgresMetastore, metastore_for
from recsys_spark.session import LOG4J_CONFIG, _absolute

SPARK_HOME = Path(pyspark.__file__).resolve().parent
DB_NAME_ROLE = "metastore"


class PlatformError(RuntimeError):
    """A part cannot start or answer; the message names it."""


@dataclass
class Part:
    name: str
    host: str
    port: int
    address: str
    start: Callable[[], None]
    stop: Optional[Callable[[], None]] = None
    answers: Optional[Callable[[], bool]] = None
    ready: Optional[Callable[[], None]] = None
    """Idempotent set-up once the part answers, whether it was started now or already running."""
    extra_ports: list[int] = field(default_factory=list)

    def answering(self) -> bool:
        return self.answers() if self.answers else port_open(self.host, self.port)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def private_file(path: Path, text: str) -> Path:
    """Write an owner-only file (it may hold the metastore password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)
    return path


class Platform:
    def __init__(self, cfg: Config):
        if cfg.spark.metastore != "postgres":
            raise ConfigError(f"the platform serves a postgres metastore; this config has "
                              f"spark.metastore={cfg.spark.metastore} (use --conf standalone)")
        self.cfg = cfg
        self.root = Path(cfg.platform.root).resolve()
        master = urlparse(cfg.spark.master)
        if master.scheme != "spark" or not master.port:
            raise ConfigError(f"spark.master must be spark://HOST:PORT for the platform, got {cfg.spark.master}")
        self.host, self.master_port = master.hostname, master.port
        pg = urlparse(cfg.spark.metastore_url.removeprefix("jdbc:"))
        self.pg_host, self.pg_port, self.pg_db = pg.hostname, pg.port or 5432, pg.path.lstrip("/")
        metastore = metastore_for(cfg.spark)
        assert isinstance(metastore, PostgresMetastore)
        self.metastore = metastore
        self.password_file = metastore.password_file or self.root / "metastore.password"
        self.run_as = "postgres" if os.geteuid() == 0 else None  # PostgreSQL refuses to run as root

    # -- paths and environment --------------------------------------------------------------------
    def pid_file(self, name: str) -> Path:
        return self.root / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def spark_env(self) -> dict[str, str]:
        return {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_SCALA_VERSION": "2.13",
                "SPARK_LOCAL_IP": self.host, "PYSPARK_PYTHON": sys.executable,
                "SPARK_LOG_DIR": str(self.root / "logs"),
                "SPARK_DAEMON_JAVA_OPTS": f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}"}

    def pg_bin(self, tool: str) -> str:
        found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"))
        if found:
            return str(found[-1])
        path = shutil.which(tool)
        if path is None:
            raise PlatformError(f"postgres: {tool} not found; install the Debian package postgresql "
                                "(make platform-deps)")
        return path

    def as_pg_user(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *command] if self.run_as else command

    # -- parts ------------------------------------------------------------------------------------
    def parts(self) -> list[Part]:
        pc = self.cfg.platform
        parts = [Part("postgres", self.pg_host, self.pg_port,
                      f"postgresql://{self.pg_host}:{self.pg_port}/{self.pg_db}",
                      self.start_postgres, self.stop_postgres, ready=self.ensure_metastore),
                 Part("spark-master", self.host, self.master_port, self.cfg.spark.master,
                      self.start_master, extra_ports=[pc.master_ui_port])]
        for i in range(1, pc.workers + 1):
            ui = pc.worker_ui_port + i - 1
            parts.append(Part(f"spark-worker-{i}", self.host, ui, f"{pc.worker_cores} core(s), UI http://{self.host}:{ui}",
                              lambda i=i: self.start_worker(i), answers=lambda i=i: self.worker_registered(i)))
        parts.append(Part("thrift-server", self.host, pc.thrift_port, f"jdbc:hive2://{self.host}:{pc.thrift_port}",
                          self.start_thrift))
        return parts

    def read_pid(self, name: str) -> Optional[int]:
        path = self.pid_file(name)
        try:
            pid = int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self, part: Part) -> bool:
        return self.read_pid(part.name) is not None and part.answering()

    def spawn(self, name: str, command: list[str], env: Optional[dict] = None) -> int:
        """Start a foreground server in its own session, its output in logs/<name>.log."""
        self.log_file(name).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(name), "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, cwd=self.root, start_new_session=True)
        self.pid_file(name).parent.mkdir(parents=True, exist_ok=True)
        self.pid_file(name).write_text(str(process.pid))
        return process.pid

    def wait_for(self, part: Part) -> None:
        deadline = time.monotonic() + self.cfg.platform.start_timeout_s
        while time.monotonic() < deadline:
            if part.answering():
                return
            if self.read_pid(part.name) is None and part.name != "postgres":
                raise PlatformError(f"{part.name} exited during start-up; see {self.log_file(part.name)}")
            time.sleep(1)
        raise PlatformError(f"{part.name} did not answer on {part.host}:{part.port} within "
                            f"{self.cfg.platform.start_timeout_s}s; see {self.log_file(part.name)}")

    # PostgreSQL ------------------------------------------------------------------------------------
    @property
    def pg_data(self) -> Path:
        return self.pg_home / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_home / "run"

    @functools.cached_property
    def pg_home(self) -> Path:
        """``<root>/postgres``, resolved. Where the PostgreSQL user cannot reach it (a checkout under
        root's private home) or its socket path would pass the kernel's 107-byte limit, it is a link
        to a directory of this root's own in the PostgreSQL user's home."""
        local = self.root / "postgres"
        if local.is_symlink() or not self.run_as:
            return local.resolve()
        reachable = subprocess.run(self.as_pg_user(["test", "-x", str(self.root)]), capture_output=True).returncode == 0
        if reachable and len(str(local / "run" / f".s.PGSQL.{self.pg_port}")) < 100:
            return local
        if local.exists():
            shutil.rmtree(local)
        home = Path(pwd.getpwnam(self.run_as).pw_dir) / "recsys-platform" / hashlib.sha256(
            str(self.root).encode()).hexdigest()[:12]
        home.mkdir(parents=True, exist_ok=True)
        for directory in (home.parent, home):
            self._chown_pg(directory)
        self.root.mkdir(parents=True, exist_ok=True)
        local.symlink_to(home, target_is_directory=True)
        return home

    def _chown_pg(self, path: Path) -> None:
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start_postgres(self) -> None:
        initdb, pg_ctl = self.pg_bin("initdb"), self.pg_bin("pg_ctl")
        for directory in (self.pg_data.parent, self.pg_socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
            self._chown_pg(directory)
        if not (self.pg_data / "PG_VERSION").exists():
            self.pg_data.mkdir(mode=0o700, exist_ok=True)
            self._chown_pg(self.pg_data)
            self._run(self.as_pg_user([initdb, "-D", str(self.pg_data), "-U", "postgres", "--auth-local=peer",
                                       "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"]), "postgres initdb")
        log = self.pg_home / "server.log"
        log.touch()
        self._chown_pg(log)
        options = (f"-c listen_addresses={self.pg_host} -p {self.pg_port} "
                   f"-c unix_socket_directories={self.pg_socket_dir} -c log_min_error_statement=panic")
        self._run(self.as_pg_user([pg_ctl, "-D", str(self.pg_data), "-l", str(log), "-o", options, "-w", "start"]),
                  "postgres start")
        self.pid_file("postgres").parent.mkdir(parents=True, exist_ok=True)
        self.pid_file("postgres").write_text((self.pg_data / "postmaster.pid").read_text().split()[0])

    def psql(self, sql: str, query: bool = False, database: str = "postgres") -> str:
        """Run SQL as the database superuser over the private socket; SQL on stdin, never in argv."""
        command = [self.pg_bin("psql"), "-h", str(self.pg_socket_dir), "-p", str(self.pg_port), "-U", "postgres",
                   "-d", database, "-v", "ON_ERROR_STOP=1", "-X", "-q"] + (["-tA"] if query else [])
        done = subprocess.run(self.as_pg_user(command), input=sql, capture_output=True, text=True)
        if done.returncode != 0:
            raise PlatformError(f"postgres: psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def ensure_metastore_role(self) -> None:
        """The metastore role and database. A missing password file gets a new password, set on the
        role (created if need be), so the file and the role always agree."""
        role, db = self.metastore.user, self.pg_db
        if not self.password_file.exists():
            password = secrets.token_urlsafe(24)
            private_file(self.password_file, password + "\n")
            exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'", query=True) == "1"
            verb = "ALTER" if exists else "CREATE"
            self.psql(f"SET log_statement = 'none';\n{verb} ROLE {role} LOGIN PASSWORD '{password}';")
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'", query=True) != "1":
            self.psql(f"CREATE DATABASE {db} OWNER {role} ENCODING 'UTF8';")

    def ensure_metastore(self) -> None:
        self.ensure_metastore_role()
        if self.psql(f"SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = 'TBLS'",
                     query=True, database=self.pg_db) != "1":
            self.create_metastore_schema()

    def create_metastore_schema(self) -> None:
        """Create the whole Hive metastore schema in one pass with DataNucleus's SchemaTool, from the
        mapping (package.jdo) of Spark's built-in Hive client. Left to Hive's lazy auto-creation, a
        job's first ALTER TABLE ... ADD CONSTRAINT waits forever on a lock its own other connection
        holds (seen on PostgreSQL: TBL_PRIVS' foreign key vs an open PARTITION_KEYS insert)."""
        jars = SPARK_HOME / "jars"
        metastore_jar = next(jars.glob("hive-metastore-*.jar"))
        work = self.root / "metastore-schema"
        work.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(metastore_jar) as jar:
            (work / "package.jdo").write_bytes(jar.read("package.jdo"))
        settings = {
            "javax.jdo.PersistenceManagerFactoryClass": "org.datanucleus.api.jdo.JDOPersistenceManagerFactory",
            "datanucleus.ConnectionDriverName": "org.postgresql.Driver",
            "datanucleus.ConnectionURL": self.cfg.spark.metastore_url,
            "datanucleus.ConnectionUserName": self.metastore.user,
            "datanucleus.ConnectionPassword": self.metastore.password(),
            # As HiveConf sets them: they decide table and column names and the id strategy.
            "datanucleus.identifierFactory": "datanucleus1",
            "datanucleus.rdbms.useLegacyNativeValueStrategy": "true",
            "datanucleus.storeManagerType": "rdbms",
        }
        properties = private_file(work / "datanucleus.properties",
                                       "".join(f"{k}={v}\n" for k, v in settings.items()))
        classpath = f"{jars}/*:{self.metastore.driver_jar or ''}"
        self._run(["java", "-cp", classpath, "org.datanucleus.store.schema.SchemaTool", "-create", "-api", "JDO",
                   "-props", str(properties), str(work / "package.jdo")], "metastore schema creation")
        print(f"{'metastore':<16} schema created in {self.cfg.spark.metastore_url}", flush=True)

    def stop_postgres(self) -> None:
        if (self.pg_data / "postmaster.pid").exists():
            self._run(self.as_pg_user([self.pg_bin("pg_ctl"), "-D", str(self.pg_data), "-m", "fast", "-w", "stop"]),
                      "postgres stop")

    # Spark standalone ------------------------------------------------------------------------------
    def spark_class(self, *args: str) -> list[str]:
        return [str(SPARK_HOME / "bin" / "spark-class"), *args]

    def start_master(self) -> None:
        self.spawn("spark-master", self.spark_class(
            "org.apache.spark.deploy.master.Master", "--host", self.host, "--port", str(self.master_port),
            "--webui-port", str(self.cfg.platform.master_ui_port)), self.spark_env())

    def start_worker(self, i: int) -> None:
        pc = self.cfg.platform
        work = self.root / f"spark-worker-{i}"
        work.mkdir(parents=True, exist_ok=True)
        self.spawn(f"spark-worker-{i}", self.spark_class(
            "org.apache.spark.deploy.worker.Worker", "--host", self.host, "--cores", str(pc.worker_cores),
            "--memory", pc.worker_memory, "--webui-port", str(pc.worker_ui_port + i - 1), "--work-dir", str(work),
            self.cfg.spark.master), self.spark_env())

    def worker_registered(self, i: int) -> bool:
        """The master lists the worker as ALIVE (a worker's own port opens before it registers)."""
        if not port_open(self.host, self.cfg.platform.worker_ui_port + i - 1):
            return False
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.cfg.platform.master_ui_port}/json/",
                                        timeout=2) as response:
                state = json.load(response)
        except OSError:
            return False
        ui = f":{self.cfg.platform.worker_ui_port + i - 1}"
        return any(w.get("state") == "ALIVE" and w.get("webuiaddress", "").endswith(ui) for w in state["workers"])

    # Thrift Server ---------------------------------------------------------------------------------
    def start_thrift(self) -> None:
        pc = self.cfg.platform
        settings = {
            "spark.master": pc.thrift_master,
            "spark.app.name": "recsys-thrift-server",
            "spark.driver.memory": pc.thrift_driver_memory,
            "spark.driver.bindAddress": self.host, "spark.driver.host": self.host,
            "spark.ui.enabled": "false",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.session.timeZone": "UTC",
            "spark.driver.extraJavaOptions": f"-Duser.timezone=UTC -Dlog4j2.configurationFile=file:{LOG4J_CONFIG}",
            **self.metastore.spark_conf(),
            # Only in this owner-only file, which spark-submit reads: not on the command line.
            f"spark.hadoop.{HIVE_PASSWORD_KEY}": self.metastore.password(),
        }
        if self.cfg.spark.warehouse_dir:
            settings["spark.sql.warehouse.dir"] = _absolute(self.cfg.spark.warehouse_dir)
        properties = private_file(self.root / "thrift-server.conf", "".join(f"{k} {v}\n" for k, v in settings.items()))
        self.spawn("thrift-server", [
            str(SPARK_HOME / "bin" / "spark-submit"), "--properties-file", str(properties),
            "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2", "spark-internal",
            "--hiveconf", f"hive.server2.thrift.bind.host={self.host}",
            "--hiveconf", f"hive.server2.thrift.port={pc.thrift_port}"], self.spark_env())

    # -- commands ---------------------------------------------------------------------------------
    def _run(self, command: list[str], what: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            raise PlatformError(f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")

    def check_prerequisites(self) -> None:
        if not shutil.which("java"):
            raise PlatformError("spark: java not found; install a Java 17 runtime (openjdk-17-jre-headless)")
        if self.metastore.driver_jar and not Path(self.metastore.driver_jar).exists():
            raise PlatformError(f"postgres: JDBC driver {self.metastore.driver_jar} not found; install the Debian "
                                "package libpostgresql-jdbc-java (make platform-deps)")
        for tool in ("initdb", "pg_ctl", "psql"):
            self.pg_bin(tool)
        if self.run_as and not shutil.which("runuser"):
            raise PlatformError("postgres: running as root needs runuser (util-linux) to start PostgreSQL as "
                                f"the {self.run_as} user")

    def up(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # PostgreSQL, running as its own user, must reach its data directory
        self.check_prerequisites()
        for part in self.parts():
            if self.running(part):
                print(f"{part.name:<16} already running   {part.address}", flush=True)
                if part.ready:
                    part.ready()
                continue
            for port in [part.port, *part.extra_ports]:
                if port_open(part.host, port):
                    raise PlatformError(f"{part.name}: port {port} on {part.host} is taken by another process "
                                        f"(not started by this platform); free it or change the port in the config")
            started = time.monotonic()
            part.start()
            self.wait_for(part)
            if part.ready:
                part.ready()
            print(f"{part.name:<16} started ({time.monotonic() - started:.0f}s)   {part.address}", flush=True)

    def down(self) -> None:
        for part in reversed(self.parts()):
            pid = self.read_pid(part.name)
            if pid is not None:
                (part.stop or (lambda: self._terminate(pid)))()
            self.pid_file(part.name).unlink(missing_ok=True)
            print(f"{part.name:<16} {'stopped' if pid else 'was not running'}", flush=True)

    @staticmethod
    def _terminate(pid: int, timeout_s: float = 30) -> None:
        """SIGTERM the server's process group (spark-class's JVM and its children), SIGKILL if it lingers."""
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.5)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)

    def status(self) -> bool:
        healthy = True
        for part in self.parts():
            ok = self.running(part)
            healthy &= ok
            print(f"{part.name:<16} {'running' if ok else 'STOPPED':<8} {part.address}", flush=True)
        return healthy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="platform.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--conf", default="standalone", help="config naming the platform (default: standalone)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        platform = Platform(load_config(args.conf, args.overrides))
        if args.command == "up":
            platform.up()
        elif args.command == "down":
            platform.down()
        else:
            return 0 if platform.status() else 1
    except (PlatformError, ConfigError) as exc:
        print(f"platform: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
