"""Top functions of a callgrind profile, per operation.

    python3 callgrind_top.py callgrind.out.w1 OPS [N]

Runs callgrind_annotate (exclusive counts), merges the entries that inlining splits by
source file under one function name, and prints the N largest (default 15) as
instructions per operation (OPS: how many operations the profiled run made), followed by
how many times the run called malloc, free, and the system-call wrappers, per operation.
"""

import collections
import re
import subprocess
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, ops = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    out = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--inclusive=no", "--threshold=100", path],
        capture_output=True, text=True, check=True).stdout
    per_fn = collections.Counter()
    total = 0
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        count, where = int(m.group(1).replace(",", "")), m.group(2)
        if "PROGRAM TOTALS" in where:
            total = count
            continue
        where = re.sub(r" \[[^\]]*\]$", "", where)         # the object file
        fn = where.split(":", 1)[1] if ":" in where else where  # drop the source file
        per_fn[fn] += count
    print(f"total {total:,} instructions, {total / ops:.0f} per operation ({ops} operations)")
    print(f"{'Ir/op':>8} {'share':>6}  function (exclusive; inlined code counted in its caller)")
    for fn, count in per_fn.most_common(top):
        print(f"{count / ops:8.1f} {100 * count / total:5.1f}%  {fn[:140]}")

    # Call counts from the raw profile: cfn= names a callee, the next calls= line its count.
    names, calls, callee = {}, collections.Counter(), None
    with open(path) as f:
        for line in f:
            m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?", line)
            if m:
                kind, ident, name = m.groups()
                if name:
                    names[ident] = name
                callee = ident if kind == "cfn" else None
                continue
            m = re.match(r"^calls=(\d+)", line)
            if m and callee:
                calls[callee] += int(m.group(1))
                callee = None
    watched = re.compile(r"^(malloc|free|realloc|calloc|__libc_(write|read)|write|read|epoll_wait|"
                         r"clock_gettime.*|__tls_get_addr|syscall|__lll_lock_wait.*|futex.*)$")
    merged = collections.Counter()
    for ident, n in calls.items():
        name = names.get(ident, "")
        if watched.match(name):
            merged[name] += n
    if merged:
        print("calls per operation: " + ", ".join(f"{name} {n / ops:.2f}" for name, n in merged.most_common()))


if __name__ == "__main__":
    main()
