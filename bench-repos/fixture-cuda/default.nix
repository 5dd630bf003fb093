# GPU canary: compiles a CUDA kernel with the runner's nvcc (host tools, no nixpkgs, like
# the other fixtures). The derivation only builds it: the manifest's [check] runs it on the
# GPU after every build, so a binary that came from the cache is exercised too.
{ cuda_home ? "/usr/local/cuda", system ? builtins.currentSystem }:
derivation {
  name = "cuda-canary";
  inherit system;
  builder = "/bin/sh";
  PATH = "${cuda_home}/bin:/usr/bin:/bin";
  src = builtins.readFile ./saxpy.cu;
  args = [ "-c" ''
    set -e
    mkdir -p $out/bin
    printf '%s' "$src" > saxpy.cu
    nvcc -O2 -o $out/bin/saxpy saxpy.cu
  '' ];
}
