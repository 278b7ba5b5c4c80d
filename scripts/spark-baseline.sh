#!/usr/bin/env bash
# Runs Apache Spark's own network-common transport (Netty TransportServer /
# TransportClient) as rpc-bench's baseline: baselines/spark/SparkTransportBench.java
# against the jars of the `pyspark` package.
#
# First use installs what it needs under target/spark-baseline/ (a Python
# virtual environment with pyspark, about 500 MB, then the compiled class);
# later runs start at once. Needs python3 and a JDK 17+ (javac, java).
#
# Usage: scripts/spark-baseline.sh bench|serve|load [options]   (options: see the Java file)
#        scripts/spark-baseline.sh --setup                      (install and compile only)
# Environment: PYSPARK_VERSION (default 4.3.0), SPARK_BASELINE_DIR (default target/spark-baseline).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${SPARK_BASELINE_DIR:-$root/target/spark-baseline}"
version="${PYSPARK_VERSION:-4.3.0}"
src="$root/baselines/spark/SparkTransportBench.java"

for tool in python3 java javac; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "spark-baseline: $tool is missing; install python3 and a JDK 17+ (apt-get install openjdk-17-jdk-headless)" >&2
    exit 3
  fi
done

mkdir -p "$dir"
# Several runs may start at once (parallel tests): the first installs and
# compiles under an exclusive lock; the others wait for it, then find it done.
exec 9>"$dir/.setup.lock"
flock 9
if [ ! -f "$dir/venv/.pyspark-$version" ]; then
  echo "spark-baseline: installing pyspark $version into $dir/venv (first use only)" >&2
  rm -rf "$dir/venv"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "pyspark==$version" >&2
  touch "$dir/venv/.pyspark-$version"
fi
jars="$("$dir/venv/bin/python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
classes="$dir/classes"
if [ ! -f "$classes/SparkTransportBench.class" ] || [ "$src" -nt "$classes/SparkTransportBench.class" ]; then
  mkdir -p "$classes"
  javac -nowarn -cp "$jars/*" -d "$classes" "$src"
fi
flock -u 9
exec 9>&-
[ "${1:-}" = "--setup" ] && exit 0

# Spark 4 on Java 17 needs these modules opened (Spark's own launcher passes them too).
exec java \
  -XX:+IgnoreUnrecognizedVMOptions \
  --add-opens=java.base/java.lang=ALL-UNNAMED \
  --add-opens=java.base/java.nio=ALL-UNNAMED \
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED \
  --add-opens=java.base/java.util=ALL-UNNAMED \
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED \
  --add-opens=java.base/jdk.internal.misc=ALL-UNNAMED \
  -Dio.netty.tryReflectionSetAccessible=true \
  -Dlog4j2.level=WARN \
  -cp "$classes:$jars/*" SparkTransportBench "$@"
