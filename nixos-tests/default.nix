# The bench inside stock Rocky Linux 10.1, Ubuntu 24.04 and Debian 12 VMs, through
# numtide/nix-vm-test (the NixOS test driver on other distributions' cloud images).
#
# The guest gets the harness and its tools from the host's Nix store (a 9p share mounted
# at /nix/store), so nothing is installed from the network to run the harness itself.
# fixture-c-dag compiles with the guest's own /usr/bin/gcc (its derivations use host tools
# by design), which the full runs install with the guest's package manager: they need a
# network and a KVM runner. `nix flake check` runs the sandboxed smoke variant instead.
{ pkgs, nix-vm-test, system, bench, src }:
let
  inherit (pkgs) lib;
  tools = pkgs.buildEnv {
    name = "flywheel-bench-guest-tools";
    paths = [ bench pkgs.nix pkgs.nginx pkgs.coreutils pkgs.git ];
  };
  distros = {
    rocky = { version = "10_1"; installGcc = "dnf -y install gcc"; };
    ubuntu = { version = "24_04"; installGcc = "apt-get update && apt-get -y install gcc"; };
    debian = { version = "12"; installGcc = "apt-get update && apt-get -y install gcc"; };
  };
  sharedDirs = {
    store = { source = "/nix/store"; target = "/nix/store"; };
    bench = { source = "${src}"; target = "/mnt/flywheel-bench"; };
  };
  harness = "${tools}/bin/flywheel-bench";
  # The guest's results file is copied out of the VM into the test's output.
  fullScript = installGcc: ''
    vm.wait_for_unit("multi-user.target")
    vm.succeed("${installGcc}")
    vm.succeed("mkdir -p /root/run && cd /root/run && PATH=${tools}/bin:$PATH FLYWHEEL_BENCH_REPOS=/mnt/flywheel-bench/bench-repos ${harness} run --lane host --repo fixture-c-dag --system nix --samples 3 --output /root/run/results.json")
    vm.copy_from_vm("/root/run/results.json", "")
  '';
  smokeScript = ''
    vm.wait_for_unit("multi-user.target")
    vm.succeed("PATH=${tools}/bin:$PATH ${harness} doctor | grep -q 'nix'")
    vm.succeed("PATH=${tools}/bin:$PATH ${harness} schema | grep -q schema_version")
  '';
  test = name: { version, installGcc }: script:
    nix-vm-test.lib.${system}.${name}.${version} {
      inherit sharedDirs;
      testScript = script installGcc;
    };
in
{
  # Full runs: `nix run .#vm-test-debian` etc. on a KVM runner with a network.
  drivers = lib.mapAttrs' (name: d: lib.nameValuePair "vm-test-${name}" (test name d fullScript).driver) distros;
  # Sandboxed smoke tests for `nix flake check`.
  checks = lib.mapAttrs' (name: d: lib.nameValuePair "vm-smoke-${name}" (test name d (_: smokeScript)).sandboxed) distros;
}
