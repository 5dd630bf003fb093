"""Generates a DAG of SIZE cc_library targets, a cc_binary and a genrule chain.

Every source file is produced by a genrule, so changing SIZE in size.bzl is the
only edit needed to resize the workload.
"""

def _deps(i):
    """Library i depends on lib i-1 and, when distinct, on lib i//2."""
    if i == 0:
        return []
    deps = [i - 1]
    if i // 2 != i - 1:
        deps.append(i // 2)
    return deps

def _lib_name(i):
    return "lib%d" % i

def _write(name, out, lines):
    """A genrule that writes `lines` into `out` (no shell expansion: no $ or ')."""
    native.genrule(
        name = name,
        outs = [out],
        cmd = "printf '%s\\n' " + " ".join(["'%s'" % l for l in lines]) + " > $@",
    )

def fixture_libs(size):
    if size < 1:
        fail("SIZE must be at least 1, got %d" % size)
    for i in range(size):
        name = _lib_name(i)
        deps = _deps(i)
        _write(
            name = name + "_h",
            out = name + ".h",
            lines = [
                "#pragma once",
                "#include <cstdint>",
                "std::uint64_t %s(std::uint64_t x);" % name,
            ],
        )
        body = ["#include \"%s.h\"" % name]
        body += ["#include \"%s.h\"" % _lib_name(d) for d in deps]
        body += [
            "#include <algorithm>",
            "#include <map>",
            "#include <string>",
            "#include <vector>",
            "namespace {",
            "template <int N> struct Mix {",
            "  static std::uint64_t run(std::uint64_t v) {",
            "    return Mix<N - 1>::run(v * 6364136223846793005ULL + %dULL + N);" % (i + 1),
            "  }",
            "};",
            "template <> struct Mix<0> {",
            "  static std::uint64_t run(std::uint64_t v) { return v; }",
            "};",
            "}  // namespace",
            "std::uint64_t %s(std::uint64_t x) {" % name,
            "  std::uint64_t v = Mix<64>::run(x);",
            "  std::map<std::string, std::uint64_t> m;",
            "  std::vector<std::string> keys;",
            "  for (std::uint64_t k = 0; k < 4; ++k) keys.push_back(std::to_string(v + k));",
            "  std::sort(keys.begin(), keys.end());",
            "  for (const auto& k : keys) m[k] = v ^ k.size();",
            "  for (const auto& kv : m) v += kv.second;",
        ]
        body += ["  v ^= %s(v >> 3);" % _lib_name(d) for d in deps]
        body += [
            "  return v;",
            "}",
        ]
        _write(name = name + "_cc", out = name + ".cc", lines = body)
        native.cc_library(
            name = name,
            srcs = [name + ".cc"],
            hdrs = [name + ".h"],
            deps = [":" + _lib_name(d) for d in deps],
        )

    top = _lib_name(size - 1)
    _write(
        name = "main_cc",
        out = "main.cc",
        lines = [
            "#include <cstdio>",
            "#include \"%s.h\"" % top,
            "int main() {",
            "  for (unsigned i = 0; i < 8; ++i) {",
            "    std::printf(\"line %%u value %%llx\\n\", i, (unsigned long long)%s(i));" % top,
            "  }",
            "  return 0;",
            "}",
        ],
    )
    native.cc_binary(
        name = "app",
        srcs = ["main.cc"],
        deps = [":" + top],
    )

    # Three chained genrules: run the binary, then transform its output twice.
    native.genrule(
        name = "run_app",
        srcs = [":app"],
        outs = ["app_output.txt"],
        cmd = "$(execpath :app) > $@",
    )
    native.genrule(
        name = "upper",
        srcs = [":app_output.txt"],
        outs = ["app_output_upper.txt"],
        cmd = "tr a-z A-Z < $< > $@",
    )
    native.genrule(
        name = "digest",
        srcs = [":app_output_upper.txt"],
        outs = ["app_output_digest.txt"],
        cmd = "sha256sum $< | cut -d' ' -f1 > $@",
    )

def timestamp_rules(on):
    """With `on`, a genrule whose output is a time stamp (never the same twice), one that
    is built from it, and one that joins that with the deterministic chain."""
    if not on:
        return
    native.genrule(
        name = "stamp",
        outs = ["stamp.txt"],
        cmd = "date +%s%N > $@",
    )
    native.genrule(
        name = "uses_stamp",
        srcs = [":stamp.txt"],
        outs = ["uses_stamp.txt"],
        cmd = "sha256sum $< | cut -d' ' -f1 > $@",
    )
    native.genrule(
        name = "stamped_all",
        srcs = [":uses_stamp.txt", ":app_output_digest.txt"],
        outs = ["stamped_all.txt"],
        cmd = "cat $(SRCS) > $@",
    )
