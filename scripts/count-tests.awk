# The closing line of scripts/test.sh: "tests: N passed, N failed, N skipped" over every test
# binary of a `cargo test` run.
#
#   awk -f scripts/count-tests.awk SKIP_LOG CARGO_TEST_OUTPUT
#
# SKIP_LOG holds one line per skip that crates/testkit recorded (SMMLAB_SKIP_LOG):
# "SKIPPED<tab>test binary<tab>test name<tab>reason". libtest counts a skipped test as passed,
# so a test that recorded a skip and then passed ("test NAME ... ok" in its binary's section,
# after cargo's "Running ... (target/.../BINARY)") counts as skipped instead; one that failed
# stays failed. Totals come from libtest's "test result:" lines.

FILENAME == ARGV[1] {
    split($0, rec, "\t")
    if (rec[1] == "SKIPPED") {
        key = rec[2] SUBSEP rec[3]
        if (!(key in why)) why[key] = rec[4]
    }
    next
}

# cargo: "     Running tests/seabios.rs (target/debug/deps/seabios-0123abcd)"; doc-tests have no binary.
/^ *Running .*\(.*\)$/ {
    bin = $0
    sub(/\)$/, "", bin)
    sub(/.*\(/, "", bin)
    sub(/.*\//, "", bin)
    sub(/\.exe$/, "", bin)
    next
}
/^ *Doc-tests / { bin = ""; next }

/^test .* \.\.\. ok$/ {
    name = $0
    sub(/^test /, "", name)
    sub(/ \.\.\. ok$/, "", name)
    key = bin SUBSEP name
    if (key in why && !(key in counted)) {
        counted[key] = 1
        skipped++
        list[skipped] = name " (" bin "): " why[key]
    }
    next
}

/^test result:/ {
    for (i = 1; i <= NF; i++) {
        if ($(i + 1) ~ /^passed/) p += $i
        if ($(i + 1) ~ /^failed/) f += $i
    }
}

END {
    for (i = 1; i <= skipped; i++) printf "skipped: %s\n", list[i]
    printf "tests: %d passed, %d failed, %d skipped\n", p - skipped, f, skipped
}
