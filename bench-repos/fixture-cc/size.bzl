# Number of generated cc_library targets. The harness overwrites this file to
# change the size of the workload; everything else derives from SIZE.
SIZE = 20
# 1: a time-stamp genrule and two genrules built from it (see repo.toml).
TIMESTAMP = 0
