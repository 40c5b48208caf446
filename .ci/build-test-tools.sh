#!/usr/bin/env bash
# Builds the test tools that come from Go modules (see README.md, "Test tooling built from Go"):
#
#   kube      kube-apiserver and kube-controller-manager, from k8s.io/kubernetes (tools/kube)
#   etcd      etcd, from go.etcd.io/etcd/server/v3 (tools/etcd)
#   helm      the helm CLI, from helm.sh/helm/v3 (tools/helm)
#   kstatus   tools/kstatus: kstatus' verdict on one object (sigs.k8s.io/cli-utils)
#   argolua   tools/argolua: an Argo CD Lua health check run as Argo CD runs it (gopher-lua)
#
# into a cache outside the checkout: ${PORTVAKT_TOOLS_DIR:-$HOME/.cache/portvakt-tools}/<tool>-<version>/bin/.
# <version> is the module's version plus a hash of the wrapper module (go.mod, go.sum, sources), so
# a changed wrapper builds anew and an unchanged one is never built twice. A tool whose binaries
# are there is skipped.
#
# Usage: bash .ci/build-test-tools.sh [--env] [--strict] [TOOL...]
#   --env     print only the export lines on stdout (progress and timings go to stderr), for
#             eval "$(bash .ci/build-test-tools.sh --env)"
#   --strict  exit 1 if any tool failed to build (otherwise the others are built, the failures
#             are named with their reason, and the exit status is 0)
#   TOOL...   build only these (kube etcd helm kstatus argolua); default: all
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tools_dir=${PORTVAKT_TOOLS_DIR:-$HOME/.cache/portvakt-tools}
all_tools=(kstatus argolua etcd kube helm)

env_only=false
strict=false
selected=()
for arg in "$@"; do
  case $arg in
    --env) env_only=true ;;
    --strict) strict=true ;;
    -h | --help)
      sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    kube | etcd | helm | kstatus | argolua) selected+=("$arg") ;;
    *)
      echo "build-test-tools: unknown argument '$arg' (expected --env, --strict or one of: ${all_tools[*]})" >&2
      exit 2
      ;;
  esac
done
[ ${#selected[@]} -gt 0 ] || selected=("${all_tools[@]}")

say() { echo "build-test-tools: $*" >&2; }

# The wrapper modules' pins, read from their go.mod files (no go command, no network).
mod_version() { # DIR MODULE
  awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) && $0 !~ /=>/ { print ($1 == "require" ? $3 : $2); exit }' \
    "$repo/tools/$1/go.mod"
}
tree_hash() { # DIR: the wrapper module's content (go.mod, go.sum, Go sources), 10 hex digits
  (cd "$repo/tools/$1" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 | LC_ALL=C sort -z \
    | xargs -0 sha256sum | sha256sum | cut -c1-10)
}

kube_version=$(mod_version kube k8s.io/kubernetes)
etcd_version=$(mod_version etcd go.etcd.io/etcd/server/v3)
helm_version=$(mod_version helm helm.sh/helm/v3)
kstatus_version=$(mod_version kstatus sigs.k8s.io/cli-utils)
argolua_version=$(mod_version argolua github.com/yuin/gopher-lua)

tool_dir() { # TOOL
  local v
  case $1 in
    kube) v=$kube_version ;;
    etcd) v=$etcd_version ;;
    helm) v=$helm_version ;;
    kstatus) v=$kstatus_version ;;
    argolua) v=$argolua_version ;;
  esac
  echo "$tools_dir/$1-${v:-unknown}-$(tree_hash "$1")"
}
binaries() { # TOOL
  case $1 in
    kube) echo kube-apiserver kube-controller-manager ;;
    *) echo "$1" ;;
  esac
}

# The go build of one tool. Runs in the wrapper module; writes into $out.
go_build() { # TOOL OUT
  local tool=$1 out=$2 ldflags=(-s -w) pkgs=()
  case $tool in
    kube)
      # As kubernetes' hack/lib/version.sh: /version (and Helm's kubeVersion checks) read these.
      local minor=${kube_version#v1.}
      minor=${minor%%.*}
      local date
      date=$(go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes 2>/dev/null) || date=""
      local p
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=(-X "$p.gitVersion=$kube_version" -X "$p.gitMajor=1" -X "$p.gitMinor=$minor" -X "$p.gitTreeState=clean")
        [ -z "$date" ] || ldflags+=(-X "$p.buildDate=$date")
      done
      # One go build for both commands: they share most of their packages.
      pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
      ;;
    etcd)
      # etcd's version is a constant in go.etcd.io/etcd/api/v3/version; its git SHA is not known here.
      ldflags+=(-X "go.etcd.io/etcd/api/v3/version.GitSHA=module-$etcd_version")
      pkgs=(go.etcd.io/etcd/server/v3)
      ;;
    helm)
      # As helm's Makefile: the version, and the Kubernetes version it lints and templates for,
      # from the k8s.io/client-go it is built with (v0.X.Y -> 1.X).
      local cg
      cg=$(go list -m -f '{{.Version}}' k8s.io/client-go) || return 1
      cg=${cg#v0.}
      ldflags+=(-X "helm.sh/helm/v3/internal/version.version=$helm_version"
        -X "helm.sh/helm/v3/internal/version.gitTreeState=clean"
        -X "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1" -X "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${cg%%.*}"
        -X "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1" -X "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${cg%%.*}")
      pkgs=(helm.sh/helm/v3/cmd/helm)
      ;;
    kstatus | argolua) pkgs=(.) ;;
  esac
  if [ ${#pkgs[@]} -eq 1 ]; then
    go build -trimpath -ldflags "${ldflags[*]}" -o "$out/$(binaries "$tool")" "${pkgs[@]}"
  else
    go build -trimpath -ldflags "${ldflags[*]}" -o "$out/" "${pkgs[@]}"
  fi
}

failed=()
reasons=()
built_any=false
build_one() { # TOOL
  local tool=$1 dir bin missing=false
  dir=$(tool_dir "$tool")
  for bin in $(binaries "$tool"); do [ -x "$dir/bin/$bin" ] || missing=true; done
  if ! $missing; then
    say "$tool: cached in $dir (0 s)"
    return 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    failed+=("$tool")
    reasons+=("no go command on PATH (this machine's Go toolchain is needed)")
    return 1
  fi
  mkdir -p "$tools_dir/logs" || return 1
  local log="$tools_dir/logs/$tool.log" tmp start end
  tmp=$(mktemp -d "$tools_dir/.build-$tool.XXXXXX") || return 1
  say "$tool: building into $dir (log: $log) ..."
  start=$(date +%s)
  (
    cd "$repo/tools/$tool" &&
      export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" &&
      go_build "$tool" "$tmp/bin"
  ) >"$log" 2>&1
  local rc=$?
  end=$(date +%s)
  built_any=true
  if [ $rc -eq 0 ]; then
    for bin in $(binaries "$tool"); do
      [ -x "$tmp/bin/$bin" ] || { echo "go build exited 0 but wrote no $bin" >>"$log"; rc=1; }
    done
  fi
  if [ $rc -ne 0 ]; then
    rm -rf "$tmp"
    failed+=("$tool")
    reasons+=("go build failed after $((end - start)) s (exit $rc); last lines of $log: $(tail -n 5 "$log" | tr '\n' ' ')")
    say "$tool: FAILED after $((end - start)) s"
    return 1
  fi
  rm -rf "$dir" && mkdir -p "$(dirname "$dir")" && mv "$tmp" "$dir"
  say "$tool: built in $((end - start)) s"
}

total_start=$(date +%s)
for tool in "${selected[@]}"; do
  build_one "$tool" || true
done
total_end=$(date +%s)
say "total: $((total_end - total_start)) s"

# The environment the tests read (tests/it/real_cluster.rs and later tests).
env_lines=()
add_env() { # NAME TOOL BINARY
  local path
  path="$(tool_dir "$2")/bin/$3"
  [ -x "$path" ] && env_lines+=("export $1=$(printf '%q' "$path")")
}
for tool in "${selected[@]}"; do
  case $tool in
    kube)
      add_env PORTVAKT_KUBE_APISERVER kube kube-apiserver
      add_env PORTVAKT_KUBE_CONTROLLER_MANAGER kube kube-controller-manager
      ;;
    etcd) add_env PORTVAKT_ETCD etcd etcd ;;
    helm) add_env PORTVAKT_HELM helm helm ;;
    kstatus) add_env PORTVAKT_KSTATUS kstatus kstatus ;;
    argolua) add_env PORTVAKT_ARGOLUA argolua argolua ;;
  esac
done

if [ ${#failed[@]} -gt 0 ]; then
  for i in "${!failed[@]}"; do
    say "NOT BUILT: ${failed[$i]}: ${reasons[$i]}"
  done
fi
if ! $env_only; then
  echo "# The test tools' environment (eval \"\$(bash .ci/build-test-tools.sh --env)\" exports it):"
fi
if [ ${#env_lines[@]} -gt 0 ]; then
  printf '%s\n' "${env_lines[@]}"
fi
if [ ${#failed[@]} -gt 0 ] && $strict; then
  exit 1
fi
exit 0
