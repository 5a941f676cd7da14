#!/usr/bin/env bash
# Builds the Dockerfile, runs the image, and composes the shipped example clip through the
# Gradio API inside it — the check that the image works, not that it reads well. Then shows
# the image's HEALTHCHECK failing when composing is broken (a corrupt checkpoint).
#
# Needs root, buildah (vfs storage, chroot isolation: works inside containers without
# overlayfs or user namespaces) and podman (imports the stand-in base). Where the base image
# `python:3.11-slim` cannot be pulled, scripts/standin_base.sh makes a stand-in from Debian
# bookworm first. Where the PyTorch CPU index cannot be reached, the CPU torch wheel is taken
# from $TORCH_WHEELS (default /opt/wheels), mounted at /tmp/wheels for the build only.
#
#   bash scripts/check_image.sh            # build (cached layers), run, compose, break
#   KEEP=1 bash scripts/check_image.sh     # leave the working containers for inspection
#
# Output: a log of every step; docs/image.md holds a recorded run.
set -euo pipefail
# The whole script is one function, parsed before it runs: editing the file during a long
# build cannot derail the run.
main() {
cd "$(dirname "$0")/.."
REPO=$(pwd)

STORAGE=(--storage-driver vfs)
IMAGE=${IMAGE:-localhost/diffbgm:check}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels}
TORCH_INDEX_URL=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
PORT=${PORT:-17860}
START_TIMEOUT_S=${START_TIMEOUT_S:-600}
APP=/home/user/app

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
bah() { buildah "${STORAGE[@]}" "$@"; }

step "tools"
[ "$(id -u)" = "0" ] || { echo "error: run as root (vfs storage, chroot isolation)" >&2; exit 1; }
for tool in buildah podman; do
  command -v "$tool" >/dev/null || {
    echo "installing $tool"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$tool" debootstrap >/dev/null
  }
done
buildah --version
podman --version

step "base image python:3.11-slim"
if bah images --quiet python:3.11-slim 2>/dev/null | grep -q .; then
  echo "found in local storage"
elif timeout 120 buildah "${STORAGE[@]}" pull -q docker.io/library/python:3.11-slim 2>/dev/null; then
  echo "pulled from Docker Hub"
else
  echo "cannot pull it here: making the Debian bookworm stand-in"
  bash scripts/standin_base.sh
fi

# Reachable CPU index? If not, build from the local CPU wheel instead.
if [ -n "$TORCH_INDEX_URL" ] && ! timeout 15 python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=10)" "$TORCH_INDEX_URL/torch/" 2>/dev/null; then
  echo "the PyTorch CPU index ($TORCH_INDEX_URL) is not reachable: using $TORCH_WHEELS"
  TORCH_INDEX_URL=""
fi

step "build context: the tracked and untracked-but-not-ignored files of this checkout"
CONTEXT=$(mktemp -d /tmp/diffbgm-context.XXXXXX)
cleanup() {
  rm -rf "$CONTEXT" "${EXTRAS:-}"
  if [ -z "${KEEP:-}" ]; then
    for c in "${CONTAINERS[@]:-}"; do [ -n "$c" ] && bah rm "$c" >/dev/null 2>&1 || true; done
  fi
}
CONTAINERS=()
trap cleanup EXIT
git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
  | tar --null -T - -cf - | tar -C "$CONTEXT" -xf -
# Build-time extras, mounted at /tmp/wheels for the RUN steps (never in the image): the CPU
# torch wheel where the index is out of reach, and the CA bundle pip trusts here (this host
# reaches PyPI through a TLS-intercepting proxy).
EXTRAS=$(mktemp -d /tmp/diffbgm-extras.XXXXXX)
if [ -z "$TORCH_INDEX_URL" ]; then
  cp "$TORCH_WHEELS"/torch-2.13.0+cpu-*.whl "$EXTRAS/"
fi
HOST_CERT=${PIP_CERT:-}
if [ -n "$HOST_CERT" ] && [ -f "$HOST_CERT" ]; then
  cp "$HOST_CERT" "$EXTRAS/ca-bundle.crt"
fi
chmod -R a+rX "$EXTRAS"
du -sh "$CONTEXT" | cut -f1 | sed 's/^/context size: /'
ls "$EXTRAS"

step "build $IMAGE (buildah bud, vfs, chroot isolation, docker format for HEALTHCHECK)"
started=$(date +%s)
bah bud --isolation chroot --format docker --layers --pull-never \
  --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL" --volume "$EXTRAS:/tmp/wheels:ro" \
  -t "$IMAGE" -f "$CONTEXT/Dockerfile" "$CONTEXT" 2>&1 \
  | grep --line-buffered -v -E '^(Collecting|Downloading|  Downloading|Using cached|  Using cached|Requirement already)' \
  | grep --line-buffered -v -E 'Getting image source signatures|Copying (blob|config)|Writing manifest|Storing signatures' \
  | grep --line-buffered -v -E '^(Get:[0-9]|Selecting previously|Preparing to unpack|Unpacking |Setting up |\(Reading database)'
echo "built in $(( $(date +%s) - started )) s"
bah images "$IMAGE"
echo "HEALTHCHECK: $(bah inspect --format '{{.Docker.Config.Healthcheck.Test}}' "$IMAGE")"
echo "CMD: $(bah inspect --format '{{.Docker.Config.Cmd}}' "$IMAGE")"

# One container per scenario; `buildah run --isolation chroot` shares the host network, so
# the app listens on 127.0.0.1:$PORT as seen from here too.
start_app() {  # start_app NAME EXTRA_SHELL_BEFORE_APP
  local name=$1 before=$2
  bah rm "$name" >/dev/null 2>&1 || true
  bah from --pull-never --name "$name" "$IMAGE" >/dev/null
  CONTAINERS+=("$name")
  bah run --isolation chroot \
    --env GRADIO_SERVER_NAME=127.0.0.1 --env GRADIO_SERVER_PORT="$PORT" \
    --env DIFFBGM_ADMIN_TOKEN=check-image-token-0123456789 \
    "$name" -- sh -c "cd $APP && $before exec python app.py" >"/tmp/$name.log" 2>&1 &
  APP_PID=$!
}

run_healthcheck() {  # the image's own HEALTHCHECK command, run inside the container
  local name=$1
  bah run --isolation chroot --env GRADIO_SERVER_PORT="$PORT" "$name" -- \
    sh -c "cd $APP && python -m webapp.health"
}

wait_settled() {  # wait until /healthz is no longer "starting" (or the app died)
  local deadline=$(( $(date +%s) + START_TIMEOUT_S ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$APP_PID" 2>/dev/null || { echo "the app exited"; return 1; }
    body=$(curl -s "http://127.0.0.1:$PORT/healthz" || true)
    case "$body" in
      '{"status":"ok"'* | '{"status":"unhealthy"'*) return 0 ;;  # the overall status
    esac
    sleep 3
  done
  echo "no settled /healthz within $START_TIMEOUT_S s"
  return 1
}

stop_app() {
  kill "$APP_PID" 2>/dev/null || true
  # buildah run's child keeps the port until python exits.
  for _ in $(seq 1 30); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" || break
    sleep 1
  done
  pkill_port=$(ss -ltnp 2>/dev/null | grep ":$PORT " | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
  [ -n "$pkill_port" ] && kill "$pkill_port" 2>/dev/null || true
  wait "$APP_PID" 2>/dev/null || true
}

status=0
step "run the image (healthy)"
started=$(date +%s)
start_app diffbgm-check-ok ""
if wait_settled; then
  echo "settled after $(( $(date +%s) - started )) s"
  echo "GET /healthz -> $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")"
  curl -s "http://127.0.0.1:$PORT/healthz" | python3 -m json.tool
  step "HEALTHCHECK command inside the running container"
  if run_healthcheck diffbgm-check-ok >/dev/null; then echo "healthcheck: exit 0 (healthy)"; else echo "healthcheck: exit 1 (unhealthy)"; status=1; fi

  step "compose the shipped example through gradio_client (inside the container)"
  started=$(date +%s)
  bah run --isolation chroot diffbgm-check-ok -- sh -c "cd $APP && python -c '
from pathlib import Path
from gradio_client import Client, handle_file
client = Client(\"http://127.0.0.1:$PORT/\", verbose=False)
out = client.predict(handle_file(\"diffbgm/assets/examples/shapes.mp4\"), api_name=\"/compose\")
summary, gallery, shots, segments, roll, audio, video, downloads, name, segment = out[:10]
sheet = out[10]
print(summary.strip())
print(\"sheet view:\", \"<svg\" in str(sheet))
print(\"shots:\", len(shots[\"data\"]), \"segments:\", len(segments[\"data\"]))
import zipfile
for path in downloads:
    print(\"file:\", Path(path).name, Path(path).stat().st_size, \"bytes\")
    if Path(path).suffix == \".zip\":
        print(\"  zip holds:\", \" \".join(sorted(zipfile.ZipFile(path).namelist())))
'" || status=1
  echo "compose round trip: $(( $(date +%s) - started )) s"
else
  status=1
fi
echo "--- app log (last lines)"
tail -n 15 /tmp/diffbgm-check-ok.log
stop_app

step "run the image with composing broken (corrupt checkpoint in DIFFBGM_MODEL)"
start_app diffbgm-check-broken \
  "mkdir -p /tmp/broken && echo '{ not json' > /tmp/broken/config.json && head -c 64 /dev/zero > /tmp/broken/model.safetensors && export DIFFBGM_MODEL=/tmp/broken &&"
if wait_settled; then
  echo "page GET / -> $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/")"
  echo "GET /healthz -> $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")"
  curl -s "http://127.0.0.1:$PORT/healthz" | python3 -m json.tool
  step "HEALTHCHECK command inside the broken container"
  if run_healthcheck diffbgm-check-broken >/dev/null; then
    echo "healthcheck: exit 0 (healthy) -- WRONG: composing is broken"; status=1
  else
    echo "healthcheck: exit 1 (unhealthy) -- as it should be"
  fi
else
  status=1
fi
stop_app

step "done: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
}
main "$@"
