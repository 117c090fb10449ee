"""The ``[spark]`` section of the configuration and the Spark session built from it.

::

    [spark]
    master = "local[*]"             # or spark://host:7077, yarn, k8s://https://...; env SPARK_MASTER wins
    driver_memory = "1g"            # spark.driver.memory (only effective when the JVM starts here)
    shuffle_partitions = 8          # spark.sql.shuffle.partitions
    conf = { "spark.executor.memory" = "4g" }   # any other Spark setting, as strings

Unknown keys are an error (as for every section of the file).  Nothing here imports ``pyspark``
until :func:`spark_session` is called, so the rest of Herald runs without it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from herald.config import SECTION_KEYS, Settings, check_section
from herald.errors import ConfigError

#: Keys of ``[spark]`` (checked when the configuration is loaded, whatever the engine).
SPARK_KEYS = SECTION_KEYS["spark"]


@dataclass(frozen=True)
class SparkSettings:
    """The typed ``[spark]`` section.

    Attributes:
        master: the Spark master URL (``SPARK_MASTER`` overrides the file; default ``local[*]``).
        driver_memory: ``spark.driver.memory``.
        shuffle_partitions: ``spark.sql.shuffle.partitions``.
        conf: further Spark settings (``spark.*`` keys, string values).
    """

    master: str = "local[*]"
    driver_memory: str = "1g"
    shuffle_partitions: int = 8
    conf: dict[str, str] = field(default_factory=dict)


def spark_settings(settings: Settings) -> SparkSettings:
    """Read and check ``[spark]`` of ``settings`` (absent: the defaults).

    Raises:
        ConfigError: the section is not a table, has unknown keys or values of the wrong type.
    """
    where = settings.where
    raw = check_section(settings, "spark", SPARK_KEYS)
    master = os.environ.get("SPARK_MASTER") or raw.get("master", "local[*]")
    if not isinstance(master, str) or not master:
        raise ConfigError(f"{where}: spark.master must be a non-empty string")
    mem = raw.get("driver_memory", "1g")
    if not isinstance(mem, str):
        raise ConfigError(f"{where}: spark.driver_memory must be a string such as \"1g\"")
    parts = raw.get("shuffle_partitions", 8)
    if not isinstance(parts, int) or isinstance(parts, bool) or parts < 1:
        raise ConfigError(f"{where}: spark.shuffle_partitions must be a positive integer")
    conf = raw.get("conf", {})
    if not isinstance(conf, dict) or not all(isinstance(k, str) and k.startswith("spark.")
                                             for k in conf):
        raise ConfigError(f"{where}: spark.conf must be a table of spark.* settings")
    return SparkSettings(master=master, driver_memory=mem, shuffle_partitions=parts,
                         conf={k: str(v) for k, v in conf.items()})


def spark_session(cfg: SparkSettings):
    """The Spark session for ``cfg`` (``getOrCreate``: a session already running in this process
    is reused).  Python workers run this interpreter (``PYSPARK_PYTHON``) unless set otherwise;
    the UI is off and the session time zone is UTC.

    Raises:
        ConfigError: ``pyspark`` is not installed (``pip install herald[spark]``).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("--engine spark needs pyspark (pip install 'herald[spark]') and Java 17+"
                          ) from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(cfg.master).appName("herald")
               .config("spark.driver.memory", cfg.driver_memory)
               .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
    for k, v in cfg.conf.items():
        builder = builder.config(k, v)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
