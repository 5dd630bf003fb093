# GPU canary: compiles a CUDA kernel with the host's nvcc, runs it on the GPU and checks
# its result. Built with host tools (no nixpkgs), like the other fixtures; the GPU devices
# reach the build sandbox through the manifest's `sandbox_paths`.
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
    $out/bin/saxpy > $out/result.txt
    grep -q '^ok ' $out/result.txt
  '' ];
}
