# Number of generated cc_library targets. The harness overwrites this file to
# change the size of the workload; everything else derives from SIZE.
SIZE = 20
