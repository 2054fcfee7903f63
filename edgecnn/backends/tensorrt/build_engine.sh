#!/usr/bin/env bash
# Build the TensorRT engines of this bundle on the device that will run them.
# Written by edgecnn @VERSION@ for target @TARGET@.
#
#   bash build_engine.sh [--precision fp32|fp16|int8] [--dla-core N] [--force]
#
# Environment: TRTEXEC (path to trtexec), EDGECNN_TRT_VERSION (skip detection, e.g. 10.3.0),
# EDGECNN_WORKSPACE_MB, DRY_RUN=1 (print the trtexec commands, run nothing).
# Engines only run on the TensorRT version and GPU that built them: build them here.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
DRY_RUN="${DRY_RUN:-0}"
WORKSPACE_MB="${EDGECNN_WORKSPACE_MB:-@WORKSPACE_MB@}"
BATCH_MIN=@BATCH_MIN@
BATCH_OPT=@BATCH_OPT@
BATCH_MAX=@BATCH_MAX@
DLA_CORES=@DLA_CORES@
TIMING_CACHE="@TIMING_CACHE@"
ONLY_PRECISION=""
DLA_CORE=""
FORCE=0

die() { echo "build_engine.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --precision) ONLY_PRECISION="${2:-}"; shift 2 ;;
    --precision=*) ONLY_PRECISION="${1#*=}"; shift ;;
    --dla-core) DLA_CORE="${2:-}"; shift 2 ;;
    --dla-core=*) DLA_CORE="${1#*=}"; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case "$ONLY_PRECISION" in ""|fp32|fp16|int8) ;; *) die "--precision must be fp32, fp16 or int8" ;; esac
if [ -n "$DLA_CORE" ]; then
  case "$DLA_CORE" in *[!0-9]*) die "--dla-core takes a core number" ;; esac
  [ "$DLA_CORES" -gt 0 ] || die "target @TARGET@ has no DLA"
  [ "$DLA_CORE" -lt "$DLA_CORES" ] || die "target @TARGET@ has DLA cores 0..$((DLA_CORES - 1))"
fi

find_trtexec() {
  if [ -n "${TRTEXEC:-}" ]; then echo "$TRTEXEC"; return 0; fi
  if [ -x /usr/src/tensorrt/bin/trtexec ]; then echo /usr/src/tensorrt/bin/trtexec; return 0; fi
  command -v trtexec 2>/dev/null && return 0
  return 1
}

# "10.3.0.30-1+cuda12.5" -> 10.3.0 ; trtexec banner "[TensorRT v100300]" -> 10.3.0, "v8502" -> 8.5.2
detect_version() {
  local v=""
  if [ -n "${EDGECNN_TRT_VERSION:-}" ]; then echo "$EDGECNN_TRT_VERSION"; return 0; fi
  if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in tensorrt libnvinfer-bin libnvinfer10 libnvinfer8; do
      v="$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)"
      [ -n "$v" ] && { echo "${v%%-*}"; return 0; }
    done
  fi
  v="$(python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)"
  [ -n "$v" ] && { echo "$v"; return 0; }
  if [ -n "$TRTEXEC_BIN" ]; then
    v="$("$TRTEXEC_BIN" --help 2>&1 | sed -n 's/.*TensorRT v\([0-9]*\).*/\1/p' | head -n 1)"
    if [ -n "$v" ]; then
      if [ "${#v}" -le 4 ]; then echo "${v:0:1}.${v:1:1}.$((10#${v:2}))"; else
        echo "$((10#${v:0:${#v}-4})).$((10#${v:${#v}-4:2})).$((10#${v:${#v}-2:2}))"; fi
      return 0
    fi
  fi
  return 1
}

TRTEXEC_BIN="$(find_trtexec || true)"
if [ -z "$TRTEXEC_BIN" ]; then
  [ "$DRY_RUN" = "1" ] || die "trtexec not found (JetPack has it in /usr/src/tensorrt/bin; set TRTEXEC=/path/to/trtexec)"
  TRTEXEC_BIN=trtexec
fi
TRT_VERSION="$(detect_version || true)"
[ -n "$TRT_VERSION" ] || die "cannot tell the TensorRT version: set EDGECNN_TRT_VERSION (e.g. 10.3.0)"
TRT_MAJOR="${TRT_VERSION%%.*}"
TRT_MINOR="$(echo "$TRT_VERSION" | cut -d. -f2)"
case "$TRT_MAJOR$TRT_MINOR" in *[!0-9]*|"") die "cannot read TensorRT version '$TRT_VERSION'" ;; esac
if [ "$TRT_MAJOR" -lt 8 ] || { [ "$TRT_MAJOR" -eq 8 ] && [ "$TRT_MINOR" -lt 2 ]; }; then
  die "TensorRT $TRT_VERSION is too old: edgecnn engines need TensorRT 8.2 or newer"
fi
echo "TensorRT $TRT_VERSION, trtexec: $TRTEXEC_BIN"

# Everything that ties an engine to this machine, for `edgecnn build .` and the runner to check.
write_provenance() {
  local engine="$1" precision="$2" source="$3" dla="$4"
  local gpu="" cc="" l4t="" sha=""
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)"
    cc="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 || true)"
  fi
  if [ -r /etc/nv_tegra_release ]; then
    l4t="$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\),.*/\1.\2/p' /etc/nv_tegra_release)"
  fi
  sha="$(sha256sum "$source" | cut -d' ' -f1)"
  {
    echo "{"
    echo "  \"tensorrt\": \"$TRT_VERSION\","
    [ -n "$gpu" ] && echo "  \"gpu\": \"$gpu\","
    [ -n "$cc" ] && echo "  \"compute_capability\": \"$cc\","
    [ -n "$l4t" ] && echo "  \"l4t\": \"$l4t\","
    echo "  \"precision\": \"$precision\","
    if [ -n "$dla" ]; then echo "  \"dla_core\": $dla,"; else echo "  \"dla_core\": null,"; fi
    echo "  \"source\": \"$(basename "$source")\","
    echo "  \"source_sha256\": \"$sha\","
    echo "  \"workspace_mb\": $WORKSPACE_MB,"
    echo "  \"batch\": {\"min\": $BATCH_MIN, \"opt\": $BATCH_OPT, \"max\": $BATCH_MAX},"
    echo "  \"strongly_typed\": $([ "$TRT_MAJOR" -ge 11 ] && echo true || echo false),"
    echo "  \"built_with\": \"build_engine.sh (trtexec)\","
    echo "  \"built_at\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\""
    echo "}"
  } > "$engine.json"
}

BUILT=0
build_one() {
  local precision="$1" source="$2" source_fp16="$3" engine="$4" input="$5" chw="$6"
  local onnx="$source" dla="" flags=()
  if [ -n "$ONLY_PRECISION" ] && [ "$precision" != "$ONLY_PRECISION" ]; then return 0; fi
  if [ -f "$engine" ] && [ "$FORCE" != "1" ] && [ "$DRY_RUN" != "1" ]; then
    echo "$engine exists: keeping it (--force rebuilds)"; return 0
  fi
  if [ "$TRT_MAJOR" -ge 11 ]; then
    # TensorRT 11: every network is strongly typed; precision comes from the graph.
    case "$precision" in
      fp16)
        [ -n "$source_fp16" ] || die "TensorRT $TRT_VERSION takes fp16 from the graph and this bundle has no fp16 ONNX: re-export it with a current edgecnn"
        onnx="$source_fp16" ;;
    esac
    flags+=(--stronglyTyped)
  else
    case "$precision" in
      fp16) flags+=(--fp16) ;;
      int8) flags+=(--int8) ;;  # explicit quantization: the scales are in the Q/DQ graph
    esac
  fi
  [ -f "$onnx" ] || [ "$DRY_RUN" = "1" ] || die "$onnx is missing: copy the whole bundle folder"
  flags+=("--minShapes=$input:${BATCH_MIN}x$chw" "--optShapes=$input:${BATCH_OPT}x$chw" "--maxShapes=$input:${BATCH_MAX}x$chw")
  if [ "$TRT_MAJOR" -ge 10 ]; then
    flags+=("--memPoolSize=workspace:${WORKSPACE_MB}M")
  elif [ "$TRT_MAJOR" -eq 8 ] && [ "$TRT_MINOR" -lt 4 ]; then
    flags+=("--workspace=$WORKSPACE_MB")
  else
    flags+=("--memPoolSize=workspace:$WORKSPACE_MB")  # 8.4-9.x: plain MiB, no unit suffix
  fi
  flags+=("--timingCacheFile=$TIMING_CACHE")
  if [ -n "$DLA_CORE" ]; then
    if [ "$precision" = "fp32" ]; then
      echo "note: DLA runs fp16/int8 only; $engine stays on the GPU" >&2
    else
      dla="$DLA_CORE"
      flags+=("--useDLACore=$DLA_CORE" --allowGPUFallback)
    fi
  fi
  if [ "$TRT_MAJOR" -gt 8 ] || { [ "$TRT_MAJOR" -eq 8 ] && [ "$TRT_MINOR" -ge 6 ]; }; then
    flags+=(--skipInference)
  else
    flags+=(--buildOnly)
  fi
  local cmd=("$TRTEXEC_BIN" "--onnx=$onnx" "--saveEngine=$engine.tmp" "${flags[@]}")
  if [ "$DRY_RUN" = "1" ]; then
    printf '%q ' "${cmd[@]}"; echo
    return 0
  fi
  mkdir -p "$(dirname "$engine")" "$(dirname "$TIMING_CACHE")"
  echo "building $engine ($precision) from $onnx ..."
  "${cmd[@]}" > "$engine.log" 2>&1 || { tail -n 30 "$engine.log" >&2; die "trtexec failed for $engine (full log: $engine.log)"; }
  mv -f "$engine.tmp" "$engine"
  write_provenance "$engine" "$precision" "$onnx" "$dla"
  BUILT=$((BUILT + 1))
  echo "built $engine"
}

@BUILDS@

if [ "$DRY_RUN" = "1" ]; then exit 0; fi
if command -v edgecnn >/dev/null 2>&1; then
  edgecnn build "$HERE"  # registers the engines in manifest.json (sha256 + provenance)
  echo "next: edgecnn bench $HERE && edgecnn verify $HERE"
else
  echo "built $BUILT engine(s). To benchmark and verify them: pip install 'edgecnn[tensorrt]', then"
  echo "  edgecnn build $HERE && edgecnn bench $HERE && edgecnn verify $HERE"
fi
