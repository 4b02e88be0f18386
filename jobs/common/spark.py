"""The one SparkSession factory: every job, notebook and test gets its session here.

It reads the repository's ``spark-defaults.conf`` (the same file ``spark-submit --properties-file``
takes), so ``python -m jobs.X``, notebooks and ``spark-submit`` all run with one configuration.
Under ``spark-submit`` the session already exists with the submitted configuration; ``get_spark``
then returns it unchanged except for the app name.

Local runs retry failed tasks. Spark's plain ``local[N]`` master gives every task one attempt, so a
Python worker killed mid-job (the kernel's OOM killer does this) fails the whole job. The default
master is therefore ``local[*,4]`` (four attempts, as ``spark.task.maxFailures`` gives a cluster),
set once as ``spark.master`` in spark-defaults.conf. A master the user names (``master=``,
``$LAKELM_MASTER``, ``spark-submit --master``, ``--conf spark.master=``, a properties file) is
always used as given; only ``spark-submit`` with no master at all, which Spark turns into
``local[*]``, is upgraded to the default.

Spark Connect: with ``remote=`` (a job's ``--remote``) or ``$SPARK_REMOTE`` the factory returns a
Spark Connect session instead. ``local[N]`` starts pyspark's own local Connect server (a Spark
driver in this process, serving gRPC on port 15002) configured from the same file, Delta extension
and catalog included; ``sc://host:port`` connects to a running server, which must have been started
with the Delta extension and catalog (static settings a client cannot change; a warning says so when
they are missing), and gets the file's runtime settings. Jobs use only what both kinds of session
offer: the DataFrame API and SQL, no ``sparkContext``, accumulators or JVM calls. `is_connect`,
`session_master` and `default_parallelism` answer the few questions jobs ask of the session.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULTS_FILE = Path(__file__).resolve().parents[2] / "spark-defaults.conf"
# Used only when no properties file sets spark.master: local, all cores, 4 attempts per task.
FALLBACK_MASTER = "local[*,4]"
# spark-submit's own default when it is given no master (SparkSubmitArguments).
_SUBMIT_IMPLICIT_MASTER = "local[*]"
# Log level of the driver's own (log4j) logging; Spark 4 applies spark.log.level at startup, in classic
# sessions and local Connect servers alike.
_LOG_LEVEL_ENV = "LAKELM_SPARK_LOG_LEVEL"
_DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
# spark-submit options that take no value; every other option consumes the next argument.
_SUBMIT_FLAGS = {"--verbose", "-v", "--supervise", "--help", "-h", "--version", "--usage-error"}


def read_properties(path: str | os.PathLike) -> dict[str, str]:
    """Parse a Spark properties file (``key value`` or ``key=value`` lines, ``#`` comments).

    Args:
        path: the file to read.

    Returns:
        The properties in file order.

    Raises:
        ValueError: on a line with a key and no value, with its line number.
    """
    props: dict[str, str] = {}
    for lineno, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" in line.split(None, 1)[0]:
            key, _, value = line.partition("=")
        else:
            parts = line.split(None, 1)
            key, value = parts[0], parts[1] if len(parts) > 1 else ""
        key, value = key.strip(), value.strip()
        if not value:
            raise ValueError(f"{path}:{lineno}: property {key!r} has no value")
        props[key] = value
    return props


def _defaults_path() -> Path | None:
    """``$LAKELM_SPARK_CONF`` if set, else the repository's spark-defaults.conf when present."""
    env = os.environ.get("LAKELM_SPARK_CONF")
    if env:
        return Path(env)
    return DEFAULTS_FILE if DEFAULTS_FILE.exists() else None


def submit_args_name_master(argv: list[str]) -> bool:
    """Whether a ``spark-submit`` command line names a master itself.

    Args:
        argv: the SparkSubmit JVM's command line (``java ... org.apache.spark.deploy.SparkSubmit
            [options] app.py [app args]``); only the options before the application are read, so
            an application argument called ``--master`` does not count.

    Returns:
        True for ``--master X``, ``--master=X``, ``--conf spark.master=X`` or a ``--properties-file``
        that sets ``spark.master``; False when spark-submit fell back to its own ``local[*]``.

    Example:
        >>> submit_args_name_master(["java", "org.apache.spark.deploy.SparkSubmit", "job.py"])
        False
        >>> submit_args_name_master(["java", "org.apache.spark.deploy.SparkSubmit", "--master", "local[2]", "job.py"])
        True
    """
    try:
        i = argv.index("org.apache.spark.deploy.SparkSubmit") + 1
    except ValueError:
        return False
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            return False  # the application: what follows are its own arguments
        name, eq, inline = arg.partition("=")
        if name in _SUBMIT_FLAGS:
            i += 1
            continue
        value = inline if eq else (argv[i + 1] if i + 1 < len(argv) else "")
        i += 1 if eq else 2
        if name == "--master":
            return True
        if name in ("--conf", "-c") and value.partition("=")[0].strip() == "spark.master":
            return True
        if name == "--properties-file":
            try:
                if "spark.master" in read_properties(value):
                    return True
            except (OSError, ValueError):
                pass  # spark-submit itself reports an unreadable file
    return False


def _submit_master_is_implicit(submitted_master: str | None) -> bool:
    """True when this driver runs under a ``spark-submit`` that was given no master (Linux ``/proc``;
    elsewhere the submitted master is kept)."""
    if submitted_master != _SUBMIT_IMPLICIT_MASTER:
        return False
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
        # spark-submit also honours $MASTER: read it from the submitting JVM's environment (this
        # process's own MASTER is set by Spark's Python runner to the resolved master).
        env = Path(f"/proc/{os.getppid()}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    if any(e.startswith(b"MASTER=") for e in env):
        return False
    argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    return "org.apache.spark.deploy.SparkSubmit" in argv and not submit_args_name_master(argv)


def console_defaults(is_terminal: bool) -> dict[str, str]:
    """Properties that depend on where the driver's output goes (the properties file and --conf override them).

    Spark's console progress bar redraws one line with carriage returns: useful on a terminal, noise in a
    log file or CI, where the jobs' own log lines (one per stage) are the progress.
    """
    return {"spark.ui.showConsoleProgress": "true" if is_terminal else "false"}


def get_spark(
    app_name: str,
    master: str | None = None,
    conf: dict[str, str] | None = None,
    remote: str | None = None,
):
    """Return the active SparkSession or build one configured from spark-defaults.conf.

    Args:
        app_name: the application name shown in logs and the Spark UI.
        master: Spark master URL; None keeps what spark-submit or ``$LAKELM_MASTER`` gave, else
            the properties file's ``spark.master`` (``local[*,4]``: all cores, 4 attempts per task).
        conf: extra properties that override the file (tests use this for small settings).
        remote: Spark Connect URL (``sc://host:port``) or ``local[N]`` for a local Connect server;
            None uses ``$SPARK_REMOTE`` when set, else a classic session.

    Returns:
        A SparkSession with the Delta extension and catalog configured: classic, or Spark Connect
        when ``remote`` or ``$SPARK_REMOTE`` is given (one log line says which, and where).

    Example:
        >>> spark = get_spark("explore")                                  # doctest: +SKIP
        >>> spark.read.format("delta").load("lake/bronze").count()       # doctest: +SKIP
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active

    # Executors must run the same interpreter as the driver (the project's venv), not the first
    # `python3` on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    remote = remote or os.environ.get("SPARK_REMOTE")
    log_level = {"spark.log.level": os.environ.get(_LOG_LEVEL_ENV, "WARN"), **console_defaults(sys.stderr.isatty())}
    if remote:
        path = _defaults_path()
        props = read_properties(path) if path is not None else {}
        return _connect_session(app_name, remote, {**log_level, **props, **(conf or {})})

    from pyspark import SparkConf, SparkContext

    # Under spark-submit the JVM is already up and holds what was submitted (--master, --conf,
    # --properties-file) as system properties. SparkConf() reads them only once this process is
    # connected to that JVM, hence _ensure_initialized first. Submitted values win; the file only
    # fills the keys still unset.
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if under_submit:
        SparkContext._ensure_initialized()
    submitted = SparkConf()
    builder = SparkSession.builder.appName(app_name)
    path = _defaults_path()
    props = read_properties(path) if path is not None else {}
    for key, value in {**log_level, **props}.items():
        if not (under_submit and submitted.contains(key)):
            builder = builder.config(key, value)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    master = master or os.environ.get("LAKELM_MASTER")
    if master:
        builder = builder.master(master)
    elif not under_submit and "spark.master" not in props:
        builder = builder.master(FALLBACK_MASTER)
    elif under_submit and _submit_master_is_implicit(submitted.get("spark.master", None)):
        builder = builder.master(props.get("spark.master", FALLBACK_MASTER))
    spark = builder.getOrCreate()
    log.info("Spark %s classic session %r on %s", spark.version, app_name, session_master(spark))
    return spark


def _connect_session(app_name: str, remote: str, props: dict[str, str]):
    """A Spark Connect session at ``remote`` (``sc://host:port``, or ``local[N]`` for a local server).

    A local server is started with every property (its master is ``remote`` itself, not the file's
    ``spark.master``); a running server keeps its own static settings and gets the runtime ones.
    """
    import warnings

    from pyspark.sql import SparkSession

    builder = SparkSession.builder.remote(remote).appName(app_name)
    for key, value in props.items():
        if key != "spark.master":
            builder = builder.config(key, value)
    with warnings.catch_warnings():
        # pyspark re-applies every property as a runtime setting after connecting and warns for each
        # static one (already applied by a local server; a running server keeps its own): noise here.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pyspark\.sql\.connect\.conf")
        spark = builder.getOrCreate()
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if _DELTA_EXTENSION not in extensions:
        log.warning(
            "the Spark Connect server at %s runs without %s: start it with spark-defaults.conf "
            "(--properties-file) so Delta tables can be read and written",
            remote,
            _DELTA_EXTENSION,
        )
    where = f"a local server ({remote}, sc://localhost:15002)" if remote.startswith("local") else remote
    log.info("Spark %s Spark Connect session %r via %s", spark.version, app_name, where)
    return spark


def is_connect(spark) -> bool:
    """True for a Spark Connect session, False for a classic one.

    Args:
        spark: a SparkSession of either kind.

    Returns:
        Whether ``spark`` talks to its driver over Spark Connect (no ``sparkContext``, no JVM).
    """
    return type(spark).__module__.startswith("pyspark.sql.connect")


def session_master(spark) -> str:
    """The master URL the session's driver runs on (``local[*,4]``, ``spark://...``), either kind of session.

    Args:
        spark: a SparkSession, classic or Spark Connect.

    Returns:
        The driver's ``spark.master``; "" when the server does not say.
    """
    return spark.conf.get("spark.master", "") or ""


def default_parallelism(spark) -> int:
    """Task slots to spread a small input over: Spark's default parallelism.

    A classic session asks its SparkContext (every executor core on a cluster). Spark Connect has
    no SparkContext, so it is read from the configuration: ``spark.default.parallelism`` when set,
    else the cores of a ``local[N]`` / ``local[*]`` master, else ``spark.sql.shuffle.partitions``.

    Args:
        spark: a SparkSession, classic or Spark Connect.

    Returns:
        A positive number of partitions.
    """
    if not is_connect(spark):
        return spark.sparkContext.defaultParallelism
    value = spark.conf.get("spark.default.parallelism", None)
    if value:
        return max(1, int(value))
    local = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\d+)?\])?", session_master(spark))
    if local:
        return 1 if local.group(1) is None else (os.cpu_count() or 1) if local.group(1) == "*" else int(local.group(1))
    return max(1, int(spark.conf.get("spark.sql.shuffle.partitions", "200") or 200))
