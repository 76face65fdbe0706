#!/usr/bin/env bash
# Ward's OpenID provider against the reference Node.js provider
# (oidc-provider, in-memory adapter) on this machine: client_credentials
# tokens/s and latency from 16 concurrent clients over loopback, access
# tokens as JWTs signed ES256 and RS256.
#
#   bench/oidc/node-provider/run.sh            # 10 s per run
#   D=20s WORKERS="1 2" bench/oidc/node-provider/run.sh
#
# oidc-provider is installed with npm into a temporary directory (or
# NODE_PROVIDER_DIR, kept between runs), never into the repository. It is
# driven by bench/oidc/loadgen; Ward is measured by the Go benchmarks in
# bench/oidc (the same load loop, in process) with the pure-Go build and
# with -tags openssl. Manual only: not part of CI or `make bench`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
D=${D:-10s}
WARMUP=${WARMUP:-2s}
CLIENTS=${CLIENTS:-16}
WORKERS=${WORKERS:-"1 $(nproc)"}
PORT=${PORT:-39411}
SECRET=bench-secret-bench-secret-bench-secret

work=$(mktemp -d)
node_pid=
cleanup() {
	if [ -n "$node_pid" ]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

np=${NODE_PROVIDER_DIR:-$work/node-provider}
mkdir -p "$np"
cp "$here/package.json" "$here/server.js" "$np/"
if [ ! -d "$np/node_modules/oidc-provider" ]; then
	(cd "$np" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi

echo "== machine"
echo "nproc: $(nproc)"
grep -m1 'model name' /proc/cpuinfo | sed 's/^model name[[:space:]]*: /cpu: /'
echo "node: $(node --version)  oidc-provider: $(node -p "require('$np/node_modules/oidc-provider/package.json').version")  go: $(go env GOVERSION)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

(cd "$root" && go build -o "$work/loadgen" ./bench/oidc/loadgen)

echo "== oidc-provider (client_credentials, resource indicator JWT access tokens), $CLIENTS clients, $D"
for alg in ES256 RS256; do
	for w in $WORKERS; do
		rm -f "$work/ready"
		(cd "$np" && ALG=$alg PORT=$PORT WORKERS=$w CLIENT_SECRET=$SECRET READY_FILE="$work/ready" \
			exec node server.js >"$work/node.log" 2>&1) &
		node_pid=$!
		for _ in $(seq 100); do [ -f "$work/ready" ] && break; sleep 0.1; done
		if [ ! -f "$work/ready" ]; then cat "$work/node.log"; echo "oidc-provider did not start" >&2; exit 1; fi
		sleep 0.5 # the other workers
		"$work/loadgen" -url "http://127.0.0.1:$PORT/token" -client svc -secret "$SECRET" -scope vitals.read \
			-alg "$alg" -c "$CLIENTS" -d "$D" -warmup "$WARMUP" -label "oidc-provider $alg workers=$w"
		kill "$node_pid"; wait "$node_pid" 2>/dev/null || true; node_pid=
	done
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

for tags in "" openssl; do
	echo "== Ward, ${tags:-pure Go} build: client_credentials, $CLIENTS clients, $D"
	(cd "$root" && go test ${tags:+-tags $tags} ./bench/oidc -run '^$' -bench '^BenchmarkClientCredentials$' -benchtime 1x \
		-load.d "$D" -load.warmup "$WARMUP" -load.c "$CLIENTS" -timeout 10m 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)|provider_test' )
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
