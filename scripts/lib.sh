# Shell helpers shared by the scripts; sourced, not run.

# logged_addr LOG PID SED: waits (up to 20 s) until the program PID has
# written the address it bound to LOG, and prints it. SED is a sed -n
# expression that prints the address from its log line. Services are started
# on port 0 and tell their port this way: picking a "free" port beforehand
# races with every other socket on the machine.
logged_addr() {
  local log=$1 pid=$2 expr=$3 addr
  for _ in $(seq 400); do
    addr=$(sed -n "$expr" "$log" | head -1)
    if [ -n "$addr" ]; then
      echo "$addr"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "ocikp: error: $(basename "$log" .log) exited before it was listening:" >&2
      tail -5 "$log" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "ocikp: error: $(basename "$log" .log) did not say where it listens within 20 s" >&2
  return 1
}
