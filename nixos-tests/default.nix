# The bench inside stock Rocky Linux 10.1, Ubuntu 24.04 and Debian 12 VMs, through
# numtide/nix-vm-test (the NixOS test driver on other distributions' cloud images), as its
# source at the pinned commit (flake.lock; images in nix-vm-test-images.json) defines them:
# `lib.<system>.<distro>.<version> { testScript; sharedDirs ? {}; ... }` gives
# `{ sandboxed, driver, driverInteractive }`.
#
# The guest runs the harness and its tools from the host's Nix store. Debian and Ubuntu
# images mount that store themselves (a 9p share under an overlay). Rocky's kernel has no 9p,
# so there the driver serves the tools' closure over the VM's user-mode network (the host is
# 10.0.2.2 in the guest) and the guest unpacks it. The results file comes back over the test
# driver's shell channel, which needs no shared folder. fixture-c-dag compiles with the
# guest's own /usr/bin/gcc (its derivations use host tools by design), which the full runs
# install with the guest's package manager: they need a network and a KVM runner.
# The sandboxed smoke variant (`nix build .#vm-smoke-debian`) needs KVM too, but no network.
{ pkgs, nix-vm-test, system, bench }:
let
  inherit (pkgs) lib;
  tools = pkgs.buildEnv {
    name = "flywheel-bench-guest-tools";
    paths = [ bench pkgs.nix pkgs.nginx pkgs.coreutils pkgs.git ];
  };
  # storeMounted: whether nix-vm-test's image mounts the host store (its 9p mount-store service).
  distros = {
    rocky = { version = "10_1"; installGcc = "dnf -y install gcc"; storeMounted = false; };
    ubuntu = { version = "24_04"; installGcc = "apt-get update && apt-get -y install gcc"; storeMounted = true; };
    debian = { version = "12"; installGcc = "apt-get update && apt-get -y install gcc"; storeMounted = true; };
  };
  # The tools' closure as one tar file, for guests that cannot mount the host store.
  closureTar = pkgs.runCommand "flywheel-bench-guest-closure" {
    closure = pkgs.closureInfo { rootPaths = [ tools ]; };
  } ''
    mkdir $out
    tar --create --file $out/closure.tar --files-from $closure/store-paths
  '';
  deliverStore = ''
    import functools, http.server, threading
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="${closureTar}")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    vm.succeed(f"curl -fsS http://10.0.2.2:{server.server_address[1]}/closure.tar | tar -x -C /")
    server.shutdown()
  '';
  harness = "PATH=${tools}/bin:$PATH FLYWHEEL_BENCH_REPOS=${bench}/share/flywheel-bench/bench-repos ${tools}/bin/flywheel-bench";
  prelude = { storeMounted, ... }: ''
    vm.wait_for_unit("multi-user.target")
  '' + lib.optionalString (!storeMounted) deliverStore;
  # The results file comes out base64-encoded over the driver's shell channel, into $out
  # (sandboxed) or the folder the driver runs in.
  fullScript = d: prelude d + ''
    vm.succeed("${d.installGcc}")
    vm.succeed("mkdir -p /root/run && cd /root/run && ${harness} run --lane host --repo fixture-c-dag --system nix --samples 3 --output /root/run/results.json")
    import base64, os, pathlib
    out = pathlib.Path(os.environ.get("out", os.getcwd()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_bytes(base64.b64decode(vm.succeed("base64 -w0 /root/run/results.json")))
  '';
  smokeScript = d: prelude d + ''
    vm.succeed("${harness} doctor | grep -q 'nix'")
    vm.succeed("${harness} schema | grep -q schema_version")
  '';
  test = name: d: script:
    nix-vm-test.lib.${system}.${name}.${d.version} {
      testScript = script d;
    };
in
{
  # Which image of nix-vm-test each distro uses (the tests check them against the pin).
  images = lib.mapAttrs (_: d: d.version) distros;
  # Full runs: `nix build .#vm-test-debian` etc. on a KVM runner with a network, then
  # `./result/bin/test-driver`; the results file lands in the current folder.
  drivers = lib.mapAttrs' (name: d: lib.nameValuePair "vm-test-${name}" (test name d fullScript).driver) distros;
  # Sandboxed smoke tests: `nix build .#vm-smoke-debian` etc. on a host with KVM (the flake
  # keeps them out of `checks`, so that `nix flake check` passes on hosts without it).
  checks = lib.mapAttrs' (name: d: lib.nameValuePair "vm-smoke-${name}" (test name d smokeScript).sandboxed) distros;
}
