# Shared by the bench shell scripts: `step NAME CMD...` runs CMD, its output also in $out/NAME.log,
# and on failure says so and sets failed=1 (every step runs regardless). Needs $out set.
failed=0
step() {
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || { echo "== $name failed (exit $rc)"; failed=1; }
}
